'use strict';
// The tag-moving custom resource (canary_stack/handlers/tag_image.js) against a stub ECR and a local
// HTTP server standing in for CloudFormation's presigned ResponseURL: every request gets exactly one
// response PUT, shaped as https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/crpg-ref-responses.html
const { test, describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const { execFile } = require('node:child_process');
const { fakeSdk, awsError } = require('./fake_sdk');

const SOURCE = path.join(__dirname, '..', '..', 'canary_stack', 'handlers', 'tag_image.js');
const { withSdk } = require(SOURCE);

const REPO = 'ecsdemo-crystal';
const HASH = 'd'.repeat(64);
const DIGEST = 'sha256:' + 'e'.repeat(64);
const MANIFEST = JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', layers: [] });
const FOUND = { images: [{ imageId: { imageDigest: DIGEST, imageTag: HASH }, imageManifest: MANIFEST, imageManifestMediaType: 'application/vnd.oci.image.manifest.v1+json', registryId: '111122223333', repositoryName: REPO }], failures: [] };
const PUT_OK = { image: { imageId: { imageDigest: DIGEST, imageTag: 'epoch' } } };

// The presigned URL: records each PUT; `statuses` lets a test make the first answers fail.
const responses = [];
let statuses = [];
let server;
let base;
before(async () => {
  server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      responses.push({ method: req.method, url: req.url, headers: req.headers, body });
      res.writeHead(statuses.shift() || 200);
      res.end();
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${server.address().port}`;
});
after(() => server.close());

let seq = 0;
function request(RequestType, props = {}, extra = {}) {
  seq += 1;
  return {
    RequestType,
    ServiceToken: 'arn:aws:lambda:eu-west-1:111122223333:function:tag',
    ResponseURL: `${base}/cfn-response/${seq}?X-Amz-Signature=abc`,
    StackId: 'arn:aws:cloudformation:eu-west-1:111122223333:stack/CrystalCanary/x',
    RequestId: `req-${seq}`,
    ResourceType: 'Custom::ImageTag',
    LogicalResourceId: 'EpochTag',
    ResourceProperties: { ServiceToken: 'arn:aws:lambda:eu-west-1:111122223333:function:tag', RepositoryName: REPO, SourceTag: HASH, Tag: 'epoch', ...props },
    ...(RequestType === 'Create' ? {} : { PhysicalResourceId: `${REPO}:epoch` }),
    ...extra,
  };
}

// Runs the handler and returns the one response CloudFormation received for this request.
async function invoke(sdk, event, context = { getRemainingTimeInMillis: () => 60000 }) {
  const before = responses.length;
  await withSdk(sdk.load).handler(event, context);
  const mine = responses.slice(before);
  assert.equal(mine.length, 1, 'exactly one response per request');
  const [r] = mine;
  assert.equal(r.method, 'PUT');
  assert.equal(r.url, new URL(event.ResponseURL).pathname + new URL(event.ResponseURL).search);
  assert.equal(r.headers['content-type'], '', 'Content-Type must be empty for the presigned URL');
  assert.ok(Buffer.byteLength(r.body) <= 4096, 'response body over 4096 bytes');
  const body = JSON.parse(r.body);
  assert.equal(body.StackId, event.StackId);
  assert.equal(body.RequestId, event.RequestId);
  assert.equal(body.LogicalResourceId, event.LogicalResourceId);
  assert.ok(typeof body.PhysicalResourceId === 'string' && body.PhysicalResourceId.length > 0);
  if (body.Status === 'FAILED') assert.match(body.Reason, /^[^\n]+$/, 'one-line Reason');
  return body;
}

describe('Create and Update', () => {
  for (const type of ['Create', 'Update']) {
    test(`${type} puts the source image's manifest under the tag and answers SUCCESS`, async (t) => {
      const sdk = fakeSdk({ BatchGetImageCommand: FOUND, PutImageCommand: PUT_OK });
      const body = await invoke(sdk, request(type));
      assert.deepEqual(body, {
        Status: 'SUCCESS',
        PhysicalResourceId: `${REPO}:epoch`,
        StackId: body.StackId,
        RequestId: body.RequestId,
        LogicalResourceId: 'EpochTag',
        Data: { ImageDigest: DIGEST },
      });
      assert.deepEqual(sdk.sent, [
        {
          client: 'ECRClient',
          command: 'BatchGetImageCommand',
          input: {
            repositoryName: REPO,
            imageIds: [{ imageTag: HASH }],
            acceptedMediaTypes: [
              'application/vnd.docker.distribution.manifest.v2+json',
              'application/vnd.docker.distribution.manifest.list.v2+json',
              'application/vnd.oci.image.manifest.v1+json',
              'application/vnd.oci.image.index.v1+json',
            ],
          },
        },
        {
          client: 'ECRClient',
          command: 'PutImageCommand',
          input: { repositoryName: REPO, imageManifest: MANIFEST, imageManifestMediaType: 'application/vnd.oci.image.manifest.v1+json', imageTag: 'epoch' },
        },
      ]);
    });
  }

  test('an Update to another tag answers with the new physical id (CloudFormation then deletes the old one)', async () => {
    const sdk = fakeSdk({ BatchGetImageCommand: FOUND, PutImageCommand: PUT_OK });
    const body = await invoke(sdk, request('Update', { Tag: 'vanilla' }));
    assert.equal(body.PhysicalResourceId, `${REPO}:vanilla`);
    assert.equal(sdk.sent[1].input.imageTag, 'vanilla');
  });

  test('a Docker v2 manifest keeps its own media type', async () => {
    const docker = structuredClone(FOUND);
    docker.images[0].imageManifestMediaType = 'application/vnd.docker.distribution.manifest.v2+json';
    const sdk = fakeSdk({ BatchGetImageCommand: docker, PutImageCommand: PUT_OK });
    assert.equal((await invoke(sdk, request('Create'))).Status, 'SUCCESS');
    assert.equal(sdk.sent[1].input.imageManifestMediaType, 'application/vnd.docker.distribution.manifest.v2+json');
  });

  test('the tag already on this manifest (ImageAlreadyExistsException) is success', async () => {
    const sdk = fakeSdk({ BatchGetImageCommand: FOUND, PutImageCommand: awsError('ImageAlreadyExistsException', 'Image with digest and tag already exists') });
    const body = await invoke(sdk, request('Update'));
    assert.equal(body.Status, 'SUCCESS');
    assert.deepEqual(body.Data, { ImageDigest: DIGEST });
  });
});

describe('failures are answered FAILED, never left hanging', () => {
  test('an absent image: FAILED with the one-line reason, and no PutImage', async (t) => {
    t.mock.method(console, 'error', () => {});
    const sdk = fakeSdk({ BatchGetImageCommand: { images: [], failures: [{ imageId: { imageTag: HASH }, failureCode: 'ImageNotFound', failureReason: 'Requested image not found' }] } });
    const body = await invoke(sdk, request('Create'));
    assert.equal(body.Status, 'FAILED');
    assert.equal(body.Reason, `image ${REPO}:${HASH} is not in the repository: ImageNotFound Requested image not found`);
    assert.equal(body.Data, undefined);
    assert.deepEqual(sdk.commands(), ['BatchGetImageCommand']);
  });

  test('an absent image with no failure entry still names the image', async (t) => {
    t.mock.method(console, 'error', () => {});
    const body = await invoke(fakeSdk({ BatchGetImageCommand: { images: [] } }), request('Create'));
    assert.equal(body.Reason, `image ${REPO}:${HASH} is not in the repository: no image returned`);
  });

  test('an SDK error (missing repository, multi-line message) is sent as one line with its name', async (t) => {
    t.mock.method(console, 'error', () => {});
    const sdk = fakeSdk({ BatchGetImageCommand: awsError('RepositoryNotFoundException', "The repository with name 'ecsdemo-crystal'\n does not exist in the registry") });
    const body = await invoke(sdk, request('Create'));
    assert.equal(body.Status, 'FAILED');
    assert.equal(body.Reason, "RepositoryNotFoundException: The repository with name 'ecsdemo-crystal' does not exist in the registry");
  });

  test('another image under an immutable tag (ImageTagAlreadyExistsException) fails', async (t) => {
    t.mock.method(console, 'error', () => {});
    const sdk = fakeSdk({ BatchGetImageCommand: FOUND, PutImageCommand: awsError('ImageTagAlreadyExistsException', 'The image tag already exists and the repository is immutable') });
    const body = await invoke(sdk, request('Create', { Tag: 'f'.repeat(64) }));
    assert.equal(body.Status, 'FAILED');
    assert.match(body.Reason, /^ImageTagAlreadyExistsException: /);
  });

  test('a failed Update keeps the physical id CloudFormation knows', async (t) => {
    t.mock.method(console, 'error', () => {});
    const body = await invoke(fakeSdk({ BatchGetImageCommand: awsError('AccessDeniedException') }), request('Update', { Tag: 'vanilla' }));
    assert.equal(body.Status, 'FAILED');
    assert.equal(body.PhysicalResourceId, `${REPO}:epoch`);
  });

  test('no SDK at all (the module cannot load) is still answered', async (t) => {
    t.mock.method(console, 'error', () => {});
    const sdk = fakeSdk();
    const load = () => { throw new Error("Cannot find module '@aws-sdk/client-ecr'"); };
    const before = responses.length;
    await withSdk(load).handler(request('Create'), {});
    assert.equal(responses.length, before + 1);
    const body = JSON.parse(responses.at(-1).body);
    assert.equal(body.Status, 'FAILED');
    assert.match(body.Reason, /Cannot find module '@aws-sdk\/client-ecr'/);
    assert.deepEqual(sdk.sent, []);
  });

  test('ECR that never answers: FAILED before Lambda would time out', async (t) => {
    t.mock.method(console, 'error', () => {});
    const sdk = fakeSdk({ BatchGetImageCommand: () => new Promise(() => {}) });
    const started = Date.now();
    const body = await invoke(sdk, request('Create'), { getRemainingTimeInMillis: () => 3200 });
    assert.equal(body.Status, 'FAILED');
    assert.equal(body.Reason, 'no answer from ECR within 200 ms');
    assert.ok(Date.now() - started < 2000);
  });

  test('a huge error message is cut so the body stays within 4096 bytes', async (t) => {
    t.mock.method(console, 'error', () => {});
    const body = await invoke(fakeSdk({ BatchGetImageCommand: awsError('ServerException', 'x'.repeat(10000)) }), request('Create'));
    assert.equal(body.Status, 'FAILED');
    assert.ok(body.Reason.length <= 1000);
  });

  for (const missing of ['RepositoryName', 'SourceTag', 'Tag']) {
    test(`a missing ${missing} is refused without calling ECR`, async (t) => {
      t.mock.method(console, 'error', () => {});
      const sdk = fakeSdk();
      const body = await invoke(sdk, request('Create', { [missing]: undefined }));
      assert.equal(body.Status, 'FAILED');
      assert.equal(body.Reason, `${missing}: a non-empty string is required`);
      assert.deepEqual(sdk.loaded, []);
    });
  }
});

describe('Delete', () => {
  test('answers SUCCESS with the physical id it was given and touches no ECR', async () => {
    const sdk = fakeSdk();
    const body = await invoke(sdk, request('Delete'));
    assert.equal(body.Status, 'SUCCESS');
    assert.equal(body.PhysicalResourceId, `${REPO}:epoch`);
    assert.equal(body.Reason, undefined);
    assert.deepEqual(sdk.loaded, []);
    assert.deepEqual(sdk.sent, []);
  });

  test('after a failed Create with bad properties, the rollback Delete still succeeds', async () => {
    const sdk = fakeSdk();
    const body = await invoke(sdk, request('Delete', { Tag: '' }, { PhysicalResourceId: `${REPO}:` }));
    assert.equal(body.Status, 'SUCCESS');
    assert.deepEqual(sdk.loaded, []);
  });
});

describe('the response PUT', () => {
  test('is retried when the presigned URL answers an error', async () => {
    statuses = [500];
    const before = responses.length;
    await withSdk(fakeSdk().load).handler(request('Delete'), {});
    assert.equal(responses.length, before + 2);
    assert.equal(JSON.parse(responses.at(-1).body).Status, 'SUCCESS');
  });

  test('gives up after three attempts and fails the invocation (logged), not silently', async (t) => {
    t.mock.method(console, 'error', () => {});
    statuses = [503, 503, 503];
    const before = responses.length;
    await assert.rejects(withSdk(fakeSdk().load).handler(request('Delete'), {}), /HTTP 503/);
    assert.equal(responses.length, before + 3);
  });
});

describe('as CloudFormation deploys it (Code.ZipFile, written as index.js)', () => {
  const source = fs.readFileSync(SOURCE, 'utf8');

  test('under 4096 bytes, CommonJS, only the runtime-bundled ECR client', () => {
    assert.ok(Buffer.byteLength(source) < 4096, `${Buffer.byteLength(source)} bytes`);
    assert.doesNotMatch(source, /^\s*(import|export)\s/m);
    assert.deepEqual([...source.matchAll(/'(@[^']+)'/g)].map((m) => m[1]), ['@aws-sdk/client-ecr']);
    assert.deepEqual([...source.matchAll(/require\b[^;]*/g)].map((m) => m[0]), ['require).handler']);
  });

  test('with no SDK installed, the real entry point still answers CloudFormation (FAILED, one line)', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tag-image-'));
    try {
      fs.copyFileSync(SOURCE, path.join(dir, 'index.js'));
      const event = request('Create');
      const script = `require('./index.js').handler(${JSON.stringify(event)}, { getRemainingTimeInMillis: () => 30000 }).then(() => {}, (e) => { console.log('threw', e); process.exit(1); });`;
      const before = responses.length;
      await new Promise((resolve, reject) => execFile(process.execPath, ['-e', script], { cwd: dir }, (e) => (e ? reject(e) : resolve())));
      assert.equal(responses.length, before + 1);
      const body = JSON.parse(responses.at(-1).body);
      assert.equal(body.Status, 'FAILED');
      assert.match(body.Reason, /^Cannot find module '@aws-sdk\/client-ecr'/);
      assert.match(body.Reason, /^[^\n]+$/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
