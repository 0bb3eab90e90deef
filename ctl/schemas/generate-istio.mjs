// Writes ctl/schemas/istio/: the validators of the Istio kinds `egressctl render istio` emits,
// bundled into one script egressctl runs in its embedded JavaScript engine (QuickJS).
//
// Source: npm @kubernetes-models/istio (version in SOURCE). It ships Istio's CRD schemas
// (crd-all.gen.yaml, openAPIV3Schema) only as validators compiled by ajv, with their runtime
// (@kubernetes-models/validate: formats, ucs2length; ajv-i18n for the English messages). esbuild
// (npm, pinned beside it) bundles exactly those modules, unchanged, into validators.js.
// Run by generate-istio.sh with the node_modules tests/support/install-fleet-deps.sh installs.
// Usage: node generate-istio.mjs MODULES_DIR OUT_DIR  (deterministic: a test regenerates and compares)
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";

const [modules, out] = process.argv.slice(2).map((p) => resolve(p));
if (!modules || !out) {
  console.error("usage: node generate-istio.mjs MODULES_DIR OUT_DIR");
  process.exit(2);
}
const { build } = await import(join(modules, "esbuild/lib/main.js"));

// "apiVersion kind" -> compiled validator in @kubernetes-models/istio/_schemas: exactly the
// kinds render istio emits. TrafficExtension is not here: the package (Istio 1.29's CRDs)
// predates it.
const KINDS = {
  "extensions.istio.io/v1alpha1 WasmPlugin": "ExtensionsIstioIoV1alpha1WasmPlugin",
  "networking.istio.io/v1 ServiceEntry": "NetworkingIstioIoV1ServiceEntry",
  "networking.istio.io/v1 DestinationRule": "NetworkingIstioIoV1DestinationRule",
  "networking.istio.io/v1 VirtualService": "NetworkingIstioIoV1VirtualService",
  "networking.istio.io/v1 Gateway": "NetworkingIstioIoV1Gateway",
};

const istio = join(modules, "@kubernetes-models/istio");
const entries = Object.entries(KINDS);
const imports = entries
  .map(([, file], i) => `import { validate as v${i} } from ${JSON.stringify(`${istio}/_schemas/${file}.js`)};`)
  .join("\n");
const table = entries.map(([key], i) => `  ${JSON.stringify(key)}: v${i},`).join("\n");
const entry = `import localize from "ajv-i18n/localize/en/index.js";
${imports}
const KINDS = {
${table}
};
// The kinds carried, one per line.
globalThis.egressIstioKinds = () => Object.keys(KINDS).join("\\n");
// null: no validator for this kind; else a JSON array of {path, message} (empty: valid).
globalThis.egressIstioValidate = (apiVersion, kind, json) => {
  const fn = KINDS[apiVersion + " " + kind];
  if (!fn) return null;
  if (fn(JSON.parse(json))) return "[]";
  const errors = fn.errors || [];
  localize(errors);
  const allowed = (e) => (e.params && e.params.allowedValues ? ": " + e.params.allowedValues.join(", ") : "");
  return JSON.stringify(errors.map((e) => ({ path: e.instancePath, message: e.message + allowed(e) })));
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
    `bundled unchanged by ctl/schemas/generate-istio.sh with npm esbuild@${esbuildVersion}. Do not edit.`,
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
