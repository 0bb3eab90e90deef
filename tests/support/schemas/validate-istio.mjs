// Validates Istio objects against the schemas @kubernetes-models/istio generates from Istio's
// own CRDs (crd-all.gen.yaml). Input: a JSON array of objects in the file named by argv[2].
// Prints one line per object; exits 1 if any fails, 2 if a kind has no schema in the package.
import { readFileSync } from "node:fs";

const objects = JSON.parse(readFileSync(process.argv[2], "utf8"));
let failed = 0;
let unknown = 0;
for (const obj of objects) {
  const [group, version] = String(obj.apiVersion).split("/");
  const at = `${obj.kind} ${obj.metadata?.name}`;
  let mod;
  try {
    mod = await import(`@kubernetes-models/istio/${group}/${version}/${obj.kind}`);
  } catch {
    console.log(`NO SCHEMA ${at} (${obj.apiVersion})`);
    unknown++;
    continue;
  }
  const Model = mod[obj.kind];
  try {
    new Model(obj).validate();
    console.log(`ok ${at}`);
  } catch (e) {
    console.log(`INVALID ${at}: ${e.message}`);
    failed++;
  }
}
process.exit(failed ? 1 : unknown ? 2 : 0);
