// Validates Kubernetes documents against Istio's published CRD schemas
// (and core Kubernetes kinds, e.g. Secret and Deployment, against the
// Kubernetes OpenAPI schemas).
//
// Reads a JSON array of documents on stdin; prints one JSON line per document:
// {"index", "kind", "apiVersion", "ok", "errors": [...]}. Exit status 0 when
// every document is valid, 1 when one is not, 2 on bad input. Documents whose
// kind/apiVersion has no Istio schema are reported as errors, never skipped.
//
// The schemas are Istio's crd-all.gen.yaml and Kubernetes' OpenAPI document,
// compiled into validators by @kubernetes-models/istio and kubernetes-models
// (package.json pins the versions). Like the API server, the schemas do not
// reject unknown fields (Kubernetes prunes them): a misspelt field is not an
// error here; a wrong type, enum value, missing required field or bound is.
import * as istio from "@kubernetes-models/istio";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
let docs;
try {
  docs = JSON.parse(Buffer.concat(chunks).toString("utf8"));
} catch (e) {
  console.error(`validate.mjs: stdin is not JSON: ${e.message}`);
  process.exit(2);
}
if (!Array.isArray(docs)) {
  console.error("validate.mjs: stdin must be a JSON array of documents");
  process.exit(2);
}

// "networking.istio.io/v1" -> istio.networkingIstioIo.v1 (the package's export names).
// Core kinds: "v1" -> kubernetes-models/v1, "apps/v1" -> kubernetes-models/apps/v1.
async function modelFor(apiVersion, kind) {
  if (typeof apiVersion !== "string" || typeof kind !== "string") return undefined;
  const [group, version, extra] = apiVersion.split("/");
  if (!group || extra !== undefined) return undefined;
  if (version === undefined) return core(group, kind);
  if (!group.endsWith(".istio.io")) return core(apiVersion, kind);
  const name = group.split(".").map((part, i) => (i === 0 ? part : part.charAt(0).toUpperCase() + part.slice(1))).join("");
  return istio[name]?.[version]?.[kind];
}

async function core(path, kind) {
  if (!/^[a-z0-9.]+(\/[a-z0-9]+)?$/.test(path)) return undefined;
  try {
    return (await import(`kubernetes-models/${path}`))[kind];
  } catch {
    return undefined;
  }
}

let failed = false;
for (const [index, doc] of docs.entries()) {
  const kind = doc?.kind;
  const apiVersion = doc?.apiVersion;
  const Model = await modelFor(apiVersion, kind);
  let errors = [];
  if (!Model) {
    errors = [`no schema for ${apiVersion} ${kind}`];
  } else {
    try {
      new Model(doc).validate();
    } catch (e) {
      errors = Array.isArray(e.errors)
        ? e.errors.map((x) => `${x.instancePath || "/"} ${x.message ?? x.keyword} ${JSON.stringify(x.params ?? {})}`)
        : [String(e.message ?? e)];
    }
  }
  failed ||= errors.length > 0;
  console.log(JSON.stringify({ index, kind, apiVersion, ok: errors.length === 0, errors }));
}
process.exit(failed ? 1 : 0);
