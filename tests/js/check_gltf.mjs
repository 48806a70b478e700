// Usage: node check_gltf.mjs FILE.glb  -> prints JSON {file, validator}; exit 1 if the validator reports errors.
import { validateFile } from "./validate.mjs";

const path = process.argv[2];
if (!path) {
  console.error("usage: node check_gltf.mjs FILE.glb");
  process.exit(2);
}
try {
  const validator = await validateFile(path);
  const errors = validator.errors.length ? validator.errors : [];
  console.log(JSON.stringify({ file: path, ok: validator.numErrors === 0, errors, warnings: validator.warnings, validator }));
  process.exit(validator.numErrors === 0 ? 0 : 1);
} catch (e) {
  console.log(JSON.stringify({ file: path, ok: false, errors: [`validator failed: ${e && e.message ? e.message : e}`], warnings: [] }));
  process.exit(1);
}
