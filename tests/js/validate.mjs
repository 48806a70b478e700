// Khronos glTF-Validator on a .glb/.vrm file: returns a compact summary.
import { readFile } from "node:fs/promises";
import validator from "gltf-validator";

export async function validateFile(path, maxMessages = 20) {
  const bytes = new Uint8Array(await readFile(path));
  const report = await validator.validateBytes(bytes, {
    maxIssues: 0, // report every issue
    externalResourceFunction: (uri) => Promise.reject(new Error(`external resource ${uri} not allowed`)),
  });
  const messages = report.issues.messages || [];
  const pick = (severity) =>
    messages.filter((m) => m.severity === severity).slice(0, maxMessages)
      .map((m) => `${m.code}: ${m.message}${m.pointer ? ` (${m.pointer})` : ""}`);
  return {
    numErrors: report.issues.numErrors,
    numWarnings: report.issues.numWarnings,
    numInfos: report.issues.numInfos,
    errors: pick(0),
    warnings: pick(1),
    infos: pick(2),
    info: report.info ? {
      version: report.info.version,
      generator: report.info.generator,
      extensionsUsed: report.info.extensionsUsed || [],
      drawCallCount: report.info.drawCallCount,
      totalVertexCount: report.info.totalVertexCount,
      totalTriangleCount: report.info.totalTriangleCount,
      maxAttributes: report.info.maxAttributes,
      animationCount: report.info.animationCount,
      materialCount: report.info.materialCount,
      hasSkins: report.info.hasSkins,
      hasTextures: report.info.hasTextures,
    } : null,
    bytes: bytes.length,
  };
}
