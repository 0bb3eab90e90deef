// Writes ctl/schemas/istio/: the validators of the Istio kinds `egressctl render istio` emits,
// bundled into one script egressctl runs in its embedded JavaScript engine (QuickJS).
//
// Source: npm @kubernetes-models/istio (version in SOURCE). It ships Istio's CRD schemas
// (crd-all.gen.yaml, openAPIV3Schema) only as validators compiled by ajv, with their runtime
// (@kubernetes-models/validate: formats, ucs2length; ajv-i18n for the English messages). esbuild
// (npm, pinned beside it) bundles exactly those modules, unchanged, into validators.js.
// The CRD schemas do not forbid unknown fields (the API server prunes them, or refuses them
// under strict field validation), so the ajv validators let them through; the fields each
// kind has are read here from the package's type declarations (generated from the same
// schemas) with the TypeScript compiler (npm, pinned), and validators.js refuses any other.
// Run by generate-istio.sh with the node_modules tests/support/install-fleet-deps.sh installs.
// Usage: node generate-istio.mjs MODULES_DIR OUT_DIR  (deterministic: a test regenerates and compares)
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join, resolve } from "node:path";

const [modules, out] = process.argv.slice(2).map((p) => resolve(p));
if (!modules || !out) {
  console.error("usage: node generate-istio.mjs MODULES_DIR OUT_DIR");
  process.exit(2);
}
const { build } = await import(join(modules, "esbuild/lib/main.js"));
const ts = createRequire(join(modules, "package.json"))("typescript");

// "apiVersion kind" -> compiled validator in @kubernetes-models/istio/_schemas: exactly the
// kinds render istio emits. TrafficExtension is not here: the package (Istio 1.29's CRDs)
// predates it.
const KINDS = {
  "extensions.istio.io/v1alpha1 WasmPlugin": "ExtensionsIstioIoV1alpha1WasmPlugin",
  "networking.istio.io/v1 ServiceEntry": "NetworkingIstioIoV1ServiceEntry",
  "networking.istio.io/v1 DestinationRule": "NetworkingIstioIoV1DestinationRule",
  "networking.istio.io/v1 VirtualService": "NetworkingIstioIoV1VirtualService",
  "networking.istio.io/v1 Gateway": "NetworkingIstioIoV1Gateway",
  "security.istio.io/v1 AuthorizationPolicy": "SecurityIstioIoV1AuthorizationPolicy",
};

const istio = join(modules, "@kubernetes-models/istio");
const entries = Object.entries(KINDS);

// The fields of each kind, from its declaration `I<Kind>` in <group>/<version>/<Kind>.d.ts, as
// a tree: 0 a leaf (scalar); {f: {name: tree}} an object's fields, {v: tree} a map's values,
// {i: tree} an array's items, {o: 1} an object with any fields (the CRD's
// x-kubernetes-preserve-unknown-fields, declared `{}`). oneOf alternatives are a union: merged.
const declarations = entries.map(([key]) => {
  const [apiVersion, kind] = key.split(" ");
  return [kind, join(istio, apiVersion, `${kind}.d.ts`)];
});
const program = ts.createProgram(
  declarations.map(([, file]) => file),
  { strict: true, noEmit: true, module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext },
);
const checker = program.getTypeChecker();
const F = ts.TypeFlags;
function merge(a, b) {
  if (!a) return b;
  if (!b) return a;
  const m = { ...a };
  if (b.o) m.o = 1;
  if (b.i !== undefined) m.i = merge(a.i, b.i);
  if (b.v !== undefined) m.v = merge(a.v, b.v);
  if (b.f) {
    m.f = { ...(a.f ?? {}) };
    for (const [k, v] of Object.entries(b.f)) m.f[k] = merge(m.f[k], v);
  }
  return m;
}
function fields(type, depth) {
  if (depth > 64) throw new Error("type declarations nest deeper than 64 levels");
  const parts = (type.isUnion() ? type.types : [type]).filter((t) => !(t.flags & (F.Undefined | F.Null)));
  if (parts.some((t) => t.flags & (F.Any | F.Unknown))) return { o: 1 };
  let node = 0;
  for (const t of parts.filter((t) => t.flags & F.Object)) {
    if (checker.isArrayType(t)) {
      node = merge(node, { i: fields(checker.getTypeArguments(t)[0], depth + 1) });
      continue;
    }
    const props = checker.getPropertiesOfType(t);
    const index = checker.getIndexInfosOfType(t);
    if (!props.length && !index.length) node = merge(node, { o: 1 });
    if (props.length) {
      node = merge(node, { f: Object.fromEntries(props.map((p) => [p.name, fields(checker.getTypeOfSymbol(p), depth + 1)])) });
    }
    for (const ix of index) node = merge(node, { v: fields(ix.type, depth + 1) });
  }
  return node;
}
const trees = Object.fromEntries(
  declarations.map(([kind, file]) => {
    const source = program.getSourceFile(file);
    const decl = source?.statements.find((s) => ts.isInterfaceDeclaration(s) && s.name.text === `I${kind}`);
    if (!decl) throw new Error(`${file}: no interface I${kind}`);
    return [kind, fields(checker.getTypeAtLocation(decl), 0)];
  }),
);
const imports = entries
  .map(([, file], i) => `import { validate as v${i} } from ${JSON.stringify(`${istio}/_schemas/${file}.js`)};`)
  .join("\n");
const table = entries.map(([key], i) => `  ${JSON.stringify(key)}: v${i},`).join("\n");
const entry = `import localize from "ajv-i18n/localize/en/index.js";
${imports}
const KINDS = {
${table}
};
const FIELDS = {
${entries.map(([key]) => `  ${JSON.stringify(key)}: ${JSON.stringify(trees[key.split(" ")[1]])},`).join("\n")}
};
const own = (o, k) => Object.prototype.hasOwnProperty.call(o, k);
// Every field of data that its tree has not, as {path, message}.
function unknownFields(tree, data, path, out) {
  if (!tree || tree.o || data === null || typeof data !== "object") return;
  if (Array.isArray(data)) {
    if (tree.i !== undefined) data.forEach((v, i) => unknownFields(tree.i, v, path + "/" + i, out));
    return;
  }
  for (const k of Object.keys(data)) {
    const at = path + "/" + k.replace(/~/g, "~0").replace(/\\//g, "~1");
    if (tree.f && own(tree.f, k)) unknownFields(tree.f[k], data[k], at, out);
    else if (tree.v !== undefined) unknownFields(tree.v, data[k], at, out);
    else out.push({ path: at, message: "unknown field (the CRD schema has no such field)" });
  }
}
// The kinds carried, one per line.
globalThis.egressIstioKinds = () => Object.keys(KINDS).join("\\n");
// null: no validator for this kind; else a JSON array of {path, message} (empty: valid).
globalThis.egressIstioValidate = (apiVersion, kind, json) => {
  const fn = KINDS[apiVersion + " " + kind];
  if (!fn) return null;
  const data = JSON.parse(json);
  const errors = fn(data) ? [] : fn.errors || [];
  localize(errors);
  const allowed = (e) => (e.params && e.params.allowedValues ? ": " + e.params.allowedValues.join(", ") : "");
  const out = errors.map((e) => ({ path: e.instancePath, message: e.message + allowed(e) }));
  unknownFields(FIELDS[apiVersion + " " + kind], data, "", out);
  return JSON.stringify(out);
};
`;

const result = await build({
  stdin: { contents: entry, resolveDir: modules, sourcefile: "egress-istio-entry.js" },
  bundle: true,
  format: "iife",
  platform: "neutral",
  mainFields: ["module", "main"],
  target: "es2020",
  minify: true,
  legalComments: "none",
  charset: "utf8",
  metafile: true,
  write: false,
  logLevel: "error",
});

// The packages bundled, with their versions and license texts (all MIT).
const packages = new Map();
for (const input of Object.keys(result.metafile.inputs)) {
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(input);
  if (m && !packages.has(m[1])) {
    const dir = join(modules, m[1]);
    const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
    const license = readdirSync(dir).find((f) => /^licen[cs]e/i.test(f));
    packages.set(m[1], {
      version: pkg.version,
      license: pkg.license,
      text: license ? readFileSync(join(dir, license), "utf8").trim() : `${pkg.license} (no license file in the package)`,
    });
  }
}
const names = [...packages.keys()].sort();
const version = (n) => packages.get(n)?.version ?? "?";
// The Istio release whose crd-all.gen.yaml the package was generated from.
const istioPkg = JSON.parse(readFileSync(join(istio, "package.json"), "utf8"));
const crdInput = (istioPkg["crd-generate"]?.input ?? []).find((u) => u.endsWith("crd-all.gen.yaml")) ?? "";
const istioVersion = /\/istio\/istio\/([^/]+)\//.exec(crdInput)?.[1] ?? "(unknown)";
const esbuildVersion = JSON.parse(readFileSync(join(modules, "esbuild/package.json"), "utf8")).version;

mkdirSync(out, { recursive: true });
writeFileSync(join(out, "validators.js"), result.outputFiles[0].text);
writeFileSync(
  join(out, "SOURCE"),
  [
    `npm @kubernetes-models/istio@${version("@kubernetes-models/istio")}, Istio ${istioVersion} CRDs`,
    "Istio's CRD schemas (crd-all.gen.yaml, openAPIV3Schema) as the validators ajv compiled from them,",
    `bundled unchanged by ctl/schemas/generate-istio.sh with npm esbuild@${esbuildVersion}; each kind's fields`,
    `(unknown fields refused) read from the package's type declarations with npm typescript@${ts.version}. Do not edit.`,
    ...entries.map(([key, file]) => `${key}: _schemas/${file}.js`),
    "Bundled packages:",
    ...names.map((n) => `  ${n}@${version(n)} (${packages.get(n).license})`),
    "",
  ].join("\n"),
);
writeFileSync(
  join(out, "THIRD-PARTY-LICENSES"),
  names.map((n) => `== ${n}@${version(n)}\n\n${packages.get(n).text}\n`).join("\n"),
);
