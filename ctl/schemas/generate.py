"""Writes ctl/schemas/k8s/*.json: the published JSON Schemas of the Kubernetes kinds
`egressctl render k8s` emits, fully dereferenced (no $ref), from the pinned registry package.

Source: PyPI kubernetes-validate (version in SOURCE), its bundled
`kubernetes-json-schema/v<K8S>-local-strict` schemas (strict: unknown fields refused).
Run by generate.sh with the interpreter of the venv install-fleet-deps.sh made.
Usage: python generate.py OUT_DIR  (deterministic: the test regenerates and compares)
"""
import json
import os
import sys
from importlib import metadata

import kubernetes_validate

K8S = "1.35.0"
# file in the package -> (apiVersion, kind): exactly the kinds render k8s emits.
KINDS = {
    "configmap-v1.json": ("v1", "ConfigMap"),
    "secret-v1.json": ("v1", "Secret"),
    "service-v1.json": ("v1", "Service"),
    "deployment-apps-v1.json": ("apps/v1", "Deployment"),
    "poddisruptionbudget-policy-v1.json": ("policy/v1", "PodDisruptionBudget"),
    "networkpolicy-networking-v1.json": ("networking.k8s.io/v1", "NetworkPolicy"),
    "serviceaccount-v1.json": ("v1", "ServiceAccount"),
}


def deref(node, defs, stack):
    if isinstance(node, dict):
        ref = node.get("$ref")
        if ref is not None:
            name = ref.split("#/$defs/", 1)[1]
            if name in stack:
                raise SystemExit(f"recursive schema at {name}: cannot dereference")
            return deref(defs[name], defs, stack + (name,))
        return {k: deref(v, defs, stack) for k, v in node.items()}
    if isinstance(node, list):
        return [deref(v, defs, stack) for v in node]
    return node


def strip(node):
    """Drops descriptions (documentation only; keeps the embedded files small)."""
    if isinstance(node, dict):
        return {k: strip(v) for k, v in node.items() if k != "description" or not isinstance(v, str)}
    if isinstance(node, list):
        return [strip(v) for v in node]
    return node


def main():
    out = sys.argv[1]
    base = os.path.join(os.path.dirname(kubernetes_validate.__file__), "kubernetes-json-schema",
                        f"v{K8S}-local-strict")
    with open(os.path.join(base, "_definitions.json")) as f:
        defs = json.load(f)["$defs"]
    os.makedirs(out, exist_ok=True)
    for file, (api, kind) in KINDS.items():
        with open(os.path.join(base, file)) as f:
            schema = json.load(f)
        schema = strip(deref(schema, defs, ()))
        name = f"{api.replace('/', '-').replace('.', '-')}-{kind.lower()}.json"
        with open(os.path.join(out, name), "w") as f:
            json.dump(schema, f, sort_keys=True, separators=(",", ":"))
            f.write("\n")
    version = metadata.version("kubernetes-validate")
    with open(os.path.join(out, "SOURCE"), "w") as f:
        f.write(f"PyPI kubernetes-validate=={version}, kubernetes-json-schema/v{K8S}-local-strict,\n")
        f.write("dereferenced and descriptions dropped by ctl/schemas/generate.sh. Do not edit.\n")
        for file, (api, kind) in KINDS.items():
            f.write(f"{api} {kind}: {file}\n")


main()
