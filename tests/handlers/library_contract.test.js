'use strict';
// Our image_copy.js against the handler it replaces: cdk-docker-image-deployment's own compiled
// lib/codebuild-handler/index.js, read from the library's jsii tarball in the Python environment
// (never copied into the project) and run here on a stub aws-sdk v2. The same events go to both;
// the answers must agree wherever the library is right, and differ only where we mean to.
const { test, describe } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const zlib = require('node:zlib');
const { fakeSdk } = require('./fake_sdk');
const { withSdk } = require('../../canary_stack/handlers/image_copy.js');

const ROOT = path.join(__dirname, '..', '..');
const TARBALL = 'cdk_docker_image_deployment/_jsii/cdk-docker-image-deployment@0.0.1039.jsii.tgz';
const MEMBER = 'package/lib/codebuild-handler/index.js';

function findTarball() {
  if (process.env.LIBRARY_JSII_TGZ) return process.env.LIBRARY_JSII_TGZ;
  const lib = path.join(ROOT, '.venv', 'lib');
  if (!fs.existsSync(lib)) return undefined;
  for (const python of fs.readdirSync(lib)) {
    const candidate = path.join(lib, python, 'site-packages', TARBALL);
    if (fs.existsSync(candidate)) return candidate;
  }
  return undefined;
}

// A tar reader for one member: 512-byte ustar headers, octal sizes, data padded to 512 bytes.
function readMember(tgz, wanted) {
  const tar = zlib.gunzipSync(fs.readFileSync(tgz));
  for (let at = 0; at + 512 <= tar.length; ) {
    const header = tar.subarray(at, at + 512);
    const field = (start, length) => header.subarray(start, start + length).toString('utf8').replace(/\0.*$/s, '');
    const name = field(0, 100);
    if (!name) break;
    const prefix = field(345, 155);
    const size = parseInt(field(124, 12).trim() || '0', 8);
    if ((prefix ? `${prefix}/${name}` : name) === wanted) return tar.subarray(at + 512, at + 512 + size).toString('utf8');
    at += 512 + Math.ceil(size / 512) * 512;
  }
  throw new Error(`${wanted} is not in ${tgz}`);
}

// The library's handler module, evaluated with `aws-sdk` (v2: client methods return {promise()})
// answered from the same canned answers as our stub v3 SDK.
function libraryHandler(source, answers) {
  const sent = [];
  const v2 = (command, answer) => (params) => {
    sent.push({ command, input: params });
    return { promise: async () => structuredClone(answer) };
  };
  const awsSdk = {
    CodeBuild: class {
      constructor() {
        this.startBuild = v2('StartBuildCommand', answers.StartBuildCommand);
        this.batchGetBuilds = v2('BatchGetBuildsCommand', answers.BatchGetBuildsCommand);
      }
    },
  };
  const module = { exports: {} };
  const load = (name) => {
    if (name !== 'aws-sdk') throw new Error(`the library handler asked for ${name}`);
    return awsSdk;
  };
  new Function('exports', 'require', 'module', source)(module.exports, load, module);
  return { onEvent: module.exports.onEventhandler, isComplete: module.exports.isCompleteHandler, sent };
}

const tgz = findTarball();
const skip = tgz ? false : 'cdk-docker-image-deployment 0.0.1039 is not installed in .venv (set LIBRARY_JSII_TGZ)';
const BUILD_ID = 'CopyProject:12345678-aaaa-4bbb-8ccc-123456789abc';
const LOGS = 'https://console.aws.amazon.com/cloudwatch/home#logEvent:group=/aws/codebuild/CopyProject';
const event = (RequestType, extra = {}) => ({ RequestType, RequestId: 'r', ResourceProperties: { projectName: 'CopyProject', ImageContentHash: 'a'.repeat(64) }, ...extra });
const answers = (buildStatus) => ({
  StartBuildCommand: { build: { id: BUILD_ID } },
  BatchGetBuildsCommand: { builds: [{ id: BUILD_ID, buildStatus, currentPhase: buildStatus === 'IN_PROGRESS' ? 'BUILD' : 'COMPLETED', logs: { deepLink: LOGS } }] },
});

// Read once: gunzipping the library's tarball costs ~0.2 s, and every case evaluates the same member.
let memberSource;

async function both(status, call) {
  memberSource ??= readMember(tgz, MEMBER);
  const source = memberSource;
  const library = libraryHandler(source, answers(status));
  const sdk = fakeSdk(answers(status));
  const ours = withSdk(sdk.load);
  const settle = (p) => p.then((value) => ({ value }), (error) => ({ error: error.message }));
  return {
    library: await settle(call(library)),
    ours: await settle(call(ours)),
    librarySent: library.sent,
    oursSent: sdk.sent.map(({ command, input }) => ({ command, input })),
  };
}

describe('the library handler we replace, run side by side', { skip }, () => {
  for (const type of ['Create', 'Update']) {
    test(`${type}: the same StartBuild call and the same answer`, async () => {
      const r = await both('IN_PROGRESS', (h) => h.onEvent(event(type)));
      assert.deepEqual(r.ours, r.library);
      assert.deepEqual(r.library.value, { BuildId: BUILD_ID });
      assert.deepEqual(r.oursSent, r.librarySent);
    });
  }

  test('Delete: the same marker, and no call', async () => {
    const r = await both('IN_PROGRESS', (h) => h.onEvent(event('Delete', { PhysicalResourceId: 'p' })));
    assert.deepEqual(r.ours, r.library);
    assert.deepEqual(r.oursSent, []);
    const done = await both('IN_PROGRESS', (h) => h.isComplete({ BuildId: 'onDelete' }));
    assert.deepEqual(done.ours, done.library);
  });

  test('IN_PROGRESS: both keep waiting, after the same BatchGetBuilds call', async () => {
    const r = await both('IN_PROGRESS', (h) => h.isComplete({ ...event('Create'), BuildId: BUILD_ID }));
    assert.deepEqual(r.ours, r.library);
    assert.deepEqual(r.ours.value, { IsComplete: false });
    assert.deepEqual(r.oursSent, r.librarySent);
  });

  test('SUCCEEDED: the same Status; LogsUrl is the link itself where the library JSON-quotes it', async () => {
    const r = await both('SUCCEEDED', (h) => h.isComplete({ ...event('Create'), BuildId: BUILD_ID }));
    assert.equal(r.ours.value.IsComplete, true);
    assert.equal(r.ours.value.Data.Status, r.library.value.Data.Status);
    assert.equal(r.library.value.Data.LogsUrl, JSON.stringify(LOGS));
    assert.equal(r.ours.value.Data.LogsUrl, LOGS);
  });

  test('FAILED: both fail at once with the log link', async () => {
    const r = await both('FAILED', (h) => h.isComplete({ ...event('Create'), BuildId: BUILD_ID }));
    assert.ok(r.library.error.includes(LOGS) && r.ours.error.includes(LOGS));
    assert.match(r.ours.error, /FAILED/);
  });

  for (const status of ['FAULT', 'TIMED_OUT', 'STOPPED']) {
    test(`${status}: the library waits (its bug, 30 minutes); ours fails at once`, async () => {
      const r = await both(status, (h) => h.isComplete({ ...event('Create'), BuildId: BUILD_ID }));
      assert.deepEqual(r.library.value, { IsComplete: false });
      assert.ok(r.ours.error.includes(status) && r.ours.error.includes(LOGS), r.ours.error);
    });
  }
});
