#!/usr/bin/env python3
"""What each part of the `auto` engine costs Envoy per request (issue 11).

Takes the config `make bench` compiled for case 13 (`auto`, API-key target), writes variants of
its listener with one native part taken out at a time, and runs each under wrk beside case 2
(Envoy's own `credential_injector`) and case 4 (the minimal wasm module), interleaved over
rounds, on the bench's pinned cores (Envoy on core 0, wrk and nginx on core 1). Prints req/s and
Envoy CPU time per request, each as a ratio to case 2 (medians over rounds). `case2_log` is case 2
with the spec's log line added the cheapest way: a like-for-like baseline for the `auto` engine,
which must write that line (issue 11's targets keep case 2 as it is). Its parts are read out of
case 13's listener (`log_parts`), as `make bench` does for its cases 17 and 18.

The variants are measurement probes, not configs to ship: most of them drop behaviour the
engine needs (the log line, caller-header removal, the plain-path check).

Run `make bench BENCH_ARGS="--quick --cases 1,2,4,13"` first (it leaves the configs and nginx's
config under target/bench/work), then from the repository root:
    python3 bench/tools/auto-cost.py [--rounds N] [--duration SECS] [VARIANT ...]
"""
import argparse, copy, json, os, re, statistics, subprocess, sys, time, urllib.request
from pathlib import Path

WORK = Path("target/bench/work")
ENVOY = Path(".venv/bin/envoy")
PATH = "/egress/api/v1/items/42"
FILTER_CONFIG = "type.googleapis.com/envoy.config.route.v3.FilterConfig"


def load_lds(path):
    text = path.read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        # Older compiles wrote a YAML header comment before the JSON document.
        return json.loads(text[text.index("{"):])


def hcm(lds):
    return lds["resources"][0]["filter_chains"][0]["filters"][0]["typed_config"]


def walk(node, fn):
    if isinstance(node, dict):
        fn(node)
        for v in list(node.values()):
            walk(v, fn)
    elif isinstance(node, list):
        for v in node:
            walk(v, fn)


def variant(fn):
    def wrapped(lds):
        lds = copy.deepcopy(lds)
        fn(lds)
        return lds
    wrapped.__doc__ = fn.__doc__
    return wrapped


@variant
def no_log(lds):
    """both access loggers removed"""
    hcm(lds).pop("access_log", None)


@variant
def one_log_no_cel(lds):
    """one access logger (the native line) without its CEL filter"""
    logs = hcm(lds)["access_log"]
    logs[1].pop("filter", None)
    hcm(lds)["access_log"] = [logs[1]]


@variant
def no_filter_state(lds):
    """set_filter_state (the native log fragment) not enabled on the leaves"""
    walk(lds, lambda o: (o.get("typed_per_filter_config") or {}).pop("egress.log", None))


@variant
def no_early(lds):
    """no early header mutation (caller headers not removed before routing)"""
    hcm(lds).pop("early_header_mutation_extensions", None)


@variant
def no_route_removal(lds):
    """no request_headers_to_remove on the routes"""
    walk(lds, lambda o: o.pop("request_headers_to_remove", None)
         if o.get("@type", "").endswith("route.v3.Route") else None)


@variant
def no_plain_check(lds):
    """the plain-path RE2 predicate skipped (every path goes to the exact/prefix maps)"""
    top = hcm(lds)["route_config"]["virtual_hosts"][0]["matcher"]
    plain = top["on_no_match"]["matcher"]["matcher_list"]["matchers"][0]
    top["on_no_match"]["matcher"] = plain["on_match"]["matcher"]


@variant
def one_route(lds):
    """the matcher tree replaced by one prefix route with prefix_rewrite (case 2's route)"""
    vh = hcm(lds)["route_config"]["virtual_hosts"][0]
    vh.pop("matcher")
    vh["routes"] = [{
        "match": {"prefix": "/egress/api/"},
        "route": {"cluster": "egress_target_api", "prefix_rewrite": "/", "timeout": "30s"},
        "typed_per_filter_config": {"egress.cred.api": {"@type": FILTER_CONFIG, "config": {}}},
    }]


@variant
def no_timers(lds):
    """no request/request-headers timeouts and no common protocol options in the HCM"""
    for k in ("request_timeout", "request_headers_timeout", "common_http_protocol_options"):
        hcm(lds).pop(k, None)


def chain(*fns):
    def run(lds):
        for fn in fns:
            lds = fn(lds)
        return lds
    run.__doc__ = " + ".join(fn.__doc__ for fn in fns)
    return run


STRIPPED = chain(no_log, no_filter_state, no_early, no_route_removal)
VARIANTS = {
    "auto": lambda lds: lds,
    "no_log": no_log,
    "one_log_no_cel": one_log_no_cel,
    "no_log_no_filter_state": chain(no_log, no_filter_state),
    "stripped": STRIPPED,
    "stripped_no_plain": chain(STRIPPED, no_plain_check),
    "stripped_one_route": chain(STRIPPED, one_route),
    "stripped_one_route_no_timers": chain(STRIPPED, one_route, no_timers),
}
VARIANTS["auto"].__doc__ = "case 13 as compiled"


def case2_hcm(doc):
    return doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]


SET_FILTER_STATE = "type.googleapis.com/envoy.extensions.filters.http.set_filter_state.v3.Config"


def log_parts(lds):
    """What case 13's listener adds to a native leaf's request for the spec's log line, read
    out of it (no format string is copied here; `make bench` grafts the same parts onto cases 2
    and 4 as cases 17 and 18, bench/src/cases/log_line.rs): the `set_filter_state` filter the
    leaf enables (its fragment reads the route metadata), the access logger printing that
    filter state (without its CEL filter) and the leaf's route metadata."""
    h = hcm(lds)
    filters = {f["name"]: f for f in h["http_filters"]}
    leaves = []
    walk(h["route_config"], lambda o: leaves.append(o) if "metadata" in o and "route" in o else None)
    for leaf in leaves:
        for name in leaf.get("typed_per_filter_config", {}):
            f = filters.get(name, {})
            typed = f.get("typed_config", {})
            if typed.get("@type") != SET_FILTER_STATE:
                continue
            fragment = typed["on_request_headers"][0]["format_string"]["text_format_source"]["inline_string"]
            if "%METADATA(ROUTE:" not in fragment:
                continue
            key = typed["on_request_headers"][0]["object_key"]
            logger = next(l for l in h["access_log"] if f"%FILTER_STATE({key}:" in
                          l["typed_config"]["log_format"]["text_format_source"]["inline_string"])
            f = copy.deepcopy(f)
            f.pop("disabled", None)
            logger = copy.deepcopy(logger)
            logger.pop("filter", None)
            return {"filter": f, "logger": logger, "metadata": leaf["metadata"]}
    sys.exit("case 13's listener has no route leaf enabling a set_filter_state filter that reads its metadata")


# Set by main() from case 13's listener.
LOG_PARTS = None


def with_filter_state(doc):
    h = case2_hcm(doc)
    h["http_filters"].insert(len(h["http_filters"]) - 1, copy.deepcopy(LOG_PARTS["filter"]))
    h["route_config"]["virtual_hosts"][0]["routes"][0]["metadata"] = copy.deepcopy(LOG_PARTS["metadata"])


def with_logger(doc, line=None):
    logger = copy.deepcopy(LOG_PARTS["logger"])
    if line is not None:
        logger["typed_config"]["log_format"]["text_format_source"]["inline_string"] = line
    case2_hcm(doc)["access_log"] = [logger]


def case2_log(doc):
    """case 2 + the spec's log line as `auto` writes it for a native leaf (its set_filter_state filter and route metadata, one file logger appending the rewritten path), without the CEL-selected second logger: case 17 of make bench"""
    doc = copy.deepcopy(doc)
    with_filter_state(doc)
    with_logger(doc)
    return doc


def case2_fs(doc):
    """case 2 + the set_filter_state filter (and route metadata) of case2_log alone (no logger)"""
    doc = copy.deepcopy(doc)
    with_filter_state(doc)
    return doc


def case2_logger(doc):
    """case 2 + the file logger of case2_log alone (its filter state unset: prints -)"""
    doc = copy.deepcopy(doc)
    with_logger(doc)
    return doc


def case2_static_log(doc):
    """case 2 + a file logger of a line with no operators (what writing a line costs at all)"""
    doc = copy.deepcopy(doc)
    with_logger(doc, '{"level":"info","msg":"Egress request"}\n')
    return doc


# Variants of case 2 (Envoy's own injector): like-for-like baselines, not issue 11's.
BASELINES = {"case2_log": case2_log, "case2_fs": case2_fs, "case2_logger": case2_logger,
             "case2_static_log": case2_static_log}


def env_file(path):
    env = dict(os.environ)
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            env[k] = v
    return env


def ports(config):
    text = config.read_text()
    doc = json.loads(text) if config.suffix == ".json" else __import__("yaml").safe_load(text)
    admin = doc["admin"]["address"]["socket_address"]["port_value"]
    if "static_resources" in doc:
        listen = doc["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"]
    else:
        lds = Path(doc["dynamic_resources"]["lds_config"]["path_config_source"]["path"])
        listen = load_lds(lds)["resources"][0]["address"]["socket_address"]["port_value"]
    return admin, listen


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(config, env, duration):
    admin, listen = ports(config)
    proc = subprocess.Popen(["taskset", "-c", "0", str(ENVOY), "-c", str(config), "--concurrency",
                             "1", "--disable-hot-restart", "--log-level", "warn"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{admin}/ready", timeout=1).status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{config}: Envoy not ready")
            time.sleep(0.1)
        url = f"http://127.0.0.1:{listen}{PATH}"
        echo = urllib.request.urlopen(url).read().decode().strip()
        wrk = ["taskset", "-c", "1", "wrk", "-t1", "-c16"]
        subprocess.run(wrk + ["-d2", url], capture_output=True, check=True)
        before = cpu_seconds(proc.pid)
        out = subprocess.run(wrk + [f"-d{duration}", url], capture_output=True, text=True,
                             check=True).stdout
        used = cpu_seconds(proc.pid) - before
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        count = int(re.search(r"(\d+) requests in", out).group(1))
        return rps, used / count * 1e6, echo
    finally:
        proc.terminate()
        proc.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("variants", nargs="*", help=", ".join([*VARIANTS, *BASELINES]))
    args = ap.parse_args()
    chosen = args.variants or [*VARIANTS, *BASELINES]
    unknown = [v for v in chosen if v not in VARIANTS and v not in BASELINES]
    if unknown:
        ap.error(f"unknown variant(s): {', '.join(unknown)}")
    src = WORK / "case13/out"
    lds_file = next((p for p in (src / "lds.json", src / "lds.yaml") if p.exists()), None)
    if lds_file is None or not (WORK / "nginx/nginx.conf").exists():
        sys.exit("no case 13 config under target/bench/work: run make bench with case 13 first")
    base = load_lds(lds_file)
    global LOG_PARTS
    LOG_PARTS = log_parts(base)
    out_root = Path("target/bench/auto-cost")
    configs = {}
    for name in [c for c in chosen if c in BASELINES]:
        out_root.mkdir(parents=True, exist_ok=True)
        doc = json.loads((WORK / "case2/envoy.json").read_text())
        configs[name] = out_root / f"{name}.json"
        configs[name].write_text(json.dumps(BASELINES[name](doc)))
    for name in [c for c in chosen if c in VARIANTS]:
        d = out_root / name
        subprocess.run(["rm", "-rf", str(d)], check=True)
        out_root.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-r", str(src), str(d)], check=True)
        lds = d / lds_file.name
        lds.write_text(json.dumps(VARIANTS[name](base)))
        boot = (d / "envoy.yaml").read_text().replace(str(src.resolve()), str(d.resolve()))
        (d / "envoy.yaml").write_text(boot)
        configs[name] = d / "envoy.yaml"
    configs["case2"] = WORK / "case2/envoy.json"
    configs["case4"] = WORK / "case4/envoy.json"
    env = env_file(src / "secrets.env")
    nginx = subprocess.Popen(["taskset", "-c", "1", "nginx", "-c", str((WORK / "nginx/nginx.conf").resolve())],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = {name: [] for name in configs}
    try:
        time.sleep(1)
        for r in range(args.rounds):
            for name, config in configs.items():
                rps, us, echo = measure(config, env, args.duration)
                results[name].append((rps, us))
                print(f"round {r + 1} {name:32} {rps:9.0f} req/s {us:7.2f} us/req  upstream saw: {echo}", flush=True)
    finally:
        nginx.terminate()
        nginx.wait()
    base_rps = statistics.median(x[0] for x in results["case2"])
    base_us = statistics.median(x[1] for x in results["case2"])
    print(f"\n| variant | what | req/s | x case 2 | CPU/req | case 2 CPU / this |\n|---|---|---:|---:|---:|---:|")
    for name, rows in results.items():
        rps = statistics.median(x[0] for x in rows)
        us = statistics.median(x[1] for x in rows)
        what = {**VARIANTS, **BASELINES}[name].__doc__ if name in VARIANTS or name in BASELINES else (
            "native injector" if name == "case2" else "minimal wasm module")
        print(f"| {name} | {what} | {rps:.0f} | {rps / base_rps:.3f} | {us:.1f} us | {base_us / us:.3f} |")


if __name__ == "__main__":
    main()
