// Usage: node check_vrm.mjs FILE.vrm
// 1) Khronos glTF-Validator: 0 errors required.
// 2) three.js GLTFLoader.parse + @pixiv/three-vrm VRMLoaderPlugin in plain Node: the VRM must load
//    (meta + humanoid) with every required humanoid bone resolved to a node.
// Prints JSON {file, ok, errors, warnings, validator, vrm: {specVersion, metaName, ...}}; exit 1 on failure.
import { readFile } from "node:fs/promises";
import * as THREE from "three";
import { GLTFLoader } from "three/addons/loaders/GLTFLoader.js";
import { VRMLoaderPlugin } from "@pixiv/three-vrm";
import { validateFile } from "./validate.mjs";

const REQUIRED = [
  "hips", "spine", "head",
  "leftUpperLeg", "leftLowerLeg", "leftFoot", "rightUpperLeg", "rightLowerLeg", "rightFoot",
  "leftUpperArm", "leftLowerArm", "leftHand", "rightUpperArm", "rightLowerArm", "rightHand",
];
const OPTIONAL = [
  "chest", "upperChest", "neck", "leftShoulder", "rightShoulder", "leftToes", "rightToes", "leftEye", "rightEye", "jaw",
];

const errors = [];
const warnings = [];
const text = (args) => args.map((a) => (a instanceof Error ? a.message : String(a))).join(" ");
// three.js reports problems (e.g. a texture that cannot be decoded without a DOM) on the console.
console.warn = (...args) => warnings.push(`three: ${text(args)}`);
console.error = (...args) => warnings.push(`three: ${text(args)}`);

const images = [];

// Plain Node has no DOM to decode images: read each embedded image's header instead and hand
// three.js an empty Texture of that size, so materials still get their maps.
function imageSize(bytes) {
  const b = new Uint8Array(bytes);
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47) {
    return { mime: "image/png", width: dv.getUint32(16), height: dv.getUint32(20) };
  }
  if (b[0] === 0xff && b[1] === 0xd8) {
    for (let i = 2; i + 9 < b.length;) {
      if (b[i] !== 0xff) { i += 1; continue; }
      const marker = b[i + 1];
      const len = dv.getUint16(i + 2);
      if (marker >= 0xc0 && marker <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(marker)) {
        return { mime: "image/jpeg", width: dv.getUint16(i + 7), height: dv.getUint16(i + 5) };
      }
      i += 2 + len;
    }
    return { mime: "image/jpeg", width: 0, height: 0 };
  }
  return null;
}

function stubImages(parser) {
  parser.loadImageSource = async function (sourceIndex) {
    const def = parser.json.images[sourceIndex];
    if (def.bufferView === undefined) throw new Error(`image ${sourceIndex} is not embedded`);
    const bytes = await parser.getDependency("bufferView", def.bufferView);
    const size = imageSize(bytes);
    if (!size) throw new Error(`image ${sourceIndex} is neither PNG nor JPEG`);
    images.push({ index: sourceIndex, ...size, bytes: bytes.byteLength });
    const texture = new THREE.Texture({ width: size.width, height: size.height });
    texture.userData.mimeType = size.mime;
    return texture;
  };
  return { name: "node_image_header_reader" };
}

function parseGltf(buffer) {
  const loader = new GLTFLoader();
  loader.register(stubImages);
  loader.register((parser) => new VRMLoaderPlugin(parser));
  return new Promise((resolve, reject) => loader.parse(buffer, "", resolve, reject));
}

function v3(vec) {
  return [vec.x, vec.y, vec.z].map((x) => Math.round(x * 10000) / 10000);
}

async function checkVrm(path) {
  const bytes = await readFile(path);
  const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  const gltf = await parseGltf(buffer);
  const json = gltf.parser.json;
  const ext = (json.extensions || {}).VRMC_vrm;
  const out = { specVersion: ext ? ext.specVersion : null };
  const vrm = gltf.userData.vrm;
  if (!vrm) {
    errors.push(ext ? "three-vrm did not create a VRM (meta or humanoid failed to load)" : "no VRMC_vrm extension");
    return out;
  }
  gltf.scene.updateMatrixWorld(true);
  out.metaVersion = vrm.meta.metaVersion;
  out.metaName = vrm.meta.name;
  out.authors = vrm.meta.authors;
  out.licenseUrl = vrm.meta.licenseUrl;
  const resolved = {};
  const missing = [];
  for (const name of [...REQUIRED, ...OPTIONAL]) {
    const node = vrm.humanoid.getRawBoneNode(name);
    if (node) {
      resolved[name] = { node: node.name, world: v3(node.getWorldPosition(new THREE.Vector3())) };
    } else if (REQUIRED.includes(name)) {
      missing.push(name);
    }
  }
  out.bonesResolved = Object.keys(resolved);
  out.bones = resolved;
  out.missingRequired = missing;
  if (missing.length) errors.push(`required humanoid bones not resolved: ${missing.join(", ")}`);
  let skinned = 0;
  let vertices = 0;
  let texturedMaterials = 0;
  const box = new THREE.Box3();
  gltf.scene.traverse((o) => {
    if (o.isSkinnedMesh) skinned += 1;
    if (o.isMesh) {
      vertices += o.geometry.attributes.position.count;
      for (const m of Array.isArray(o.material) ? o.material : [o.material]) if (m && m.map) texturedMaterials += 1;
      box.expandByObject(o);
    }
  });
  out.skinnedMeshes = skinned;
  out.texturedMaterials = texturedMaterials;
  out.images = images;
  out.vertices = vertices;
  out.bounds = { min: v3(box.min), max: v3(box.max) };
  if (resolved.leftUpperArm && resolved.rightUpperArm) {
    out.leftArmAtPlusX = resolved.leftUpperArm.world[0] > resolved.rightUpperArm.world[0];
    if (!out.leftArmAtPlusX) errors.push("leftUpperArm is not on +X (VRM 1.0 models face +Z)");
  }
  if (!skinned) errors.push("no skinned mesh");
  return out;
}

const path = process.argv[2];
if (!path) {
  process.stdout.write("usage: node check_vrm.mjs FILE.vrm\n");
  process.exit(2);
}
const result = { file: path };
try {
  result.validator = await validateFile(path);
  if (result.validator.numErrors > 0) {
    errors.push(`glTF-Validator: ${result.validator.numErrors} errors: ${result.validator.errors.join("; ")}`);
  }
} catch (e) {
  errors.push(`glTF-Validator could not read the file: ${e && e.message ? e.message : e}`);
}
try {
  result.vrm = await checkVrm(path);
} catch (e) {
  errors.push(`three-vrm failed to load the file: ${e && e.message ? e.message : e}`);
}
result.ok = errors.length === 0;
result.errors = errors;
result.warnings = warnings;
process.stdout.write(JSON.stringify(result) + "\n");
process.exit(result.ok ? 0 : 1);
