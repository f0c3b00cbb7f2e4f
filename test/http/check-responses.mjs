// test/http/check-responses.mjs: checks responses p2pay-http gave against
// http/openapi.json: that each status is one the document lists for the
// operation (or its default, for 405 and 500), and that each JSON body
// matches the schema the document gives for that status, with no field the
// schema does not name.  t/015_http.pl
// records every response it gets, one JSON object a line:
//   {"method": "GET", "path": "/api/v1/payments/…", "status": 200,
//    "content_type": "application/json", "body": …}
// Paths the document does not describe (the 404s of unknown paths) are
// not checked.
//
// Usage: node test/http/check-responses.mjs RESPONSES_JSONL [OPENAPI_JSON]
// Needs `npm ci` in http/ (swagger-parser, and the ajv it depends on).
// Exits 0 when every response matches, 1 with the list of those that don't.
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
if (!process.argv[2]) {
  console.error('usage: node test/http/check-responses.mjs RESPONSES_JSONL [OPENAPI_JSON]');
  process.exit(2);
}
const recorded = resolve(process.argv[2]);
const docPath = resolve(process.argv[3] ?? `${root}/http/openapi.json`);
const require = createRequire(`${root}/http/package.json`);
let SwaggerParser, Ajv;
try {
  SwaggerParser = require('@apidevtools/swagger-parser');
  Ajv = require('ajv');
} catch (e) {
  console.error(`check-responses: can't load swagger-parser and ajv from ${root}/http/node_modules ` +
    `(run "npm ci" in http/): ${e.message}`);
  process.exit(1);
}

const doc = await SwaggerParser.dereference(JSON.parse(readFileSync(docPath, 'utf8')));
// OpenAPI 3.0 schemas: nullable is ajv's; example and the like are not
// validation keywords; the formats the document uses are checked here.
const ajv = new Ajv({ strict: false, allErrors: true });
ajv.addFormat('uuid', /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i);
ajv.addFormat('date-time', /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d(:?\d\d)?)$/i);
ajv.addFormat('int64', { type: 'number', validate: (n) => Number.isInteger(n) });

// each path template as a pattern, the longest literal first
const templates = Object.keys(doc.paths).map((t) => ({
  template: t,
  pattern: new RegExp('^' + t.replace(/[.]/g, '\\.').replace(/\{[^}/]+\}/g, '[^/]+') + '$'),
}));

// A copy of a schema in which every object with properties allows no
// others (unless it says so): a field the daemon sends that the document
// does not describe is a mismatch, though the document leaves clients free
// to ignore fields added later.
function closed(schema) {
  if (Array.isArray(schema)) return schema.map(closed);
  if (schema === null || typeof schema !== 'object') return schema;
  const copy = Object.fromEntries(Object.entries(schema).map(([k, v]) => [k, closed(v)]));
  if (copy.properties && !('additionalProperties' in copy)) copy.additionalProperties = false;
  return copy;
}

const problems = [];
const validators = new Map();
let checked = 0;
const lines = readFileSync(recorded, 'utf8').split('\n').filter((l) => l.trim() !== '');
for (const [n, line] of lines.entries()) {
  const r = JSON.parse(line);
  const where = `line ${n + 1}: ${r.method} ${r.path} ${r.status}`;
  const t = templates.find((c) => c.pattern.test(r.path));
  if (!t) continue;
  const op = doc.paths[t.template][r.method.toLowerCase()];
  if (!op) {
    if (r.status !== 405) problems.push(`${where}: the document has no ${r.method} ${t.template}, and the status is not 405`);
    continue;
  }
  let response = op.responses[String(r.status)];
  if (!response) {
    if (![405, 500].includes(r.status) || !op.responses.default) {
      problems.push(`${where}: status ${r.status} is not among those the document lists for ${r.method} ${t.template}`);
      continue;
    }
    response = op.responses.default;
  }
  const type = (r.content_type ?? '').split(';')[0].trim();
  const media = response.content?.[type];
  if (!media) {
    problems.push(`${where}: the document gives no ${type || 'content'} for this status`);
    continue;
  }
  checked++;
  if (type !== 'application/json' || !media.schema) continue;
  const key = `${r.method} ${t.template} ${r.status}`;
  if (!validators.has(key)) validators.set(key, ajv.compile(closed(media.schema)));
  const validate = validators.get(key);
  if (!validate(r.body))
    problems.push(`${where}: the body does not match the document's schema:\n` +
      validate.errors.map((e) => `    ${e.instancePath || '/'} ${e.message}`).join('\n') +
      `\n    body: ${JSON.stringify(r.body).slice(0, 300)}`);
}

if (problems.length) {
  console.error(`check-responses: ${problems.length} of ${lines.length} responses don't match ${docPath}:\n` +
    problems.map((p) => `- ${p}`).join('\n'));
  process.exit(1);
}
console.log(`check-responses: ${checked} responses match ${docPath} (${lines.length - checked} on paths it does not describe)`);
