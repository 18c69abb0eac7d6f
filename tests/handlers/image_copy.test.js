'use strict';
// The image copy's handlers (canary_stack/handlers/image_copy.js) against a stub SDK: the contract
// of cdk-docker-image-deployment 0.0.1039's codebuild-handler (onEventhandler / isCompleteHandler),
// which the library's CDK Provider calls and whose Data its CfnOutput report reads
// (Fn::GetAtt Status and LogsUrl), plus a fail-fast on every final CodeBuild status but SUCCEEDED.
const { test, describe } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { fakeSdk, awsError } = require('./fake_sdk');

const SOURCE = path.join(__dirname, '..', '..', 'canary_stack', 'handlers', 'image_copy.js');
const { withSdk } = require(SOURCE);

const BUILD_ID = 'CanaryCopyProject:0b5c3f0e-1111-4222-8333-944455556666';
const LOGS = 'https://console.aws.amazon.com/cloudwatch/home?region=eu-west-1#logEvent:group=/aws/codebuild/p;stream=s';
const PROPS = { ServiceToken: 'arn:aws:lambda:eu-west-1:111122223333:function:fw', projectName: 'CanaryCopyProject', ImageContentHash: 'a'.repeat(64) };

// What CloudFormation sends through CDK's provider framework (ResponseURL sanitized by it).
function request(RequestType, extra = {}) {
  return {
    RequestType,
    RequestId: 'req-1',
    ResponseURL: '...',
    ResourceType: 'AWS::CloudFormation::CustomResource',
    LogicalResourceId: 'CanaryImageCopy',
    StackId: 'arn:aws:cloudformation:eu-west-1:111122223333:stack/CrystalCanary/x',
    ResourceProperties: PROPS,
    ...(RequestType === 'Create' ? {} : { PhysicalResourceId: 'req-0' }),
    ...extra,
  };
}

const build = (buildStatus, logs = { deepLink: LOGS }) => ({ builds: [{ id: BUILD_ID, buildStatus, currentPhase: buildStatus === 'IN_PROGRESS' ? 'BUILD' : 'COMPLETED', logs }] });

// CDK's provider framework as aws-cdk-lib 2.275 runs it (custom-resources/.../runtime/framework.js):
// isComplete gets {...request, ...onEventResult}; IsComplete false must carry no Data; the answer to
// CloudFormation merges Data; a throw from isComplete is answered FAILED at once with its message.
async function provider(handlers, event, maxPolls = 10) {
  const onEventResult = (await handlers.onEvent(event)) || {};
  const waiting = { ...event, ...onEventResult, PhysicalResourceId: onEventResult.PhysicalResourceId || (event.RequestType === 'Create' ? event.RequestId : event.PhysicalResourceId) };
  for (let poll = 1; poll <= maxPolls; poll++) {
    let result;
    try {
      result = await handlers.isComplete(waiting);
    } catch (e) {
      return { Status: 'FAILED', Reason: e.message, polls: poll };
    }
    if (result.IsComplete) return { Status: 'SUCCESS', PhysicalResourceId: waiting.PhysicalResourceId, Data: { ...waiting.Data, ...result.Data }, polls: poll };
    assert.ok(!result.Data || Object.keys(result.Data).length === 0, '"Data" is not allowed if "IsComplete" is "False"');
  }
  return { Status: 'TIMED OUT', polls: maxPolls };
}

describe('onEvent', () => {
  for (const type of ['Create', 'Update']) {
    test(`${type} starts the project's build and hands its id to isComplete`, async () => {
      const sdk = fakeSdk({ StartBuildCommand: { build: { id: BUILD_ID, buildStatus: 'IN_PROGRESS' } } });
      const result = await withSdk(sdk.load).onEvent(request(type));
      assert.deepEqual(result, { BuildId: BUILD_ID });
      assert.deepEqual(sdk.sent, [{ client: 'CodeBuildClient', command: 'StartBuildCommand', input: { projectName: 'CanaryCopyProject' } }]);
      assert.deepEqual([...new Set(sdk.loaded)], ['@aws-sdk/client-codebuild']);
    });
  }

  test('Delete starts nothing and loads no SDK (the library does nothing on delete either)', async () => {
    const sdk = fakeSdk();
    const handlers = withSdk(sdk.load);
    assert.deepEqual(await handlers.onEvent(request('Delete')), { BuildId: 'onDelete' });
    assert.deepEqual(await handlers.isComplete({ ...request('Delete'), BuildId: 'onDelete' }), { IsComplete: true });
    assert.deepEqual(sdk.loaded, []);
    assert.deepEqual(sdk.sent, []);
  });

  test('a StartBuild answer without a build id is an error, not a silent success', async () => {
    const sdk = fakeSdk({ StartBuildCommand: { build: {} } });
    await assert.rejects(withSdk(sdk.load).onEvent(request('Create')), /BuildId does not exist after CodeBuild:StartBuild call/);
  });

  test('a StartBuild error reaches the provider (CloudFormation gets FAILED with it)', async () => {
    const sdk = fakeSdk({ StartBuildCommand: awsError('AccessDeniedException', 'not authorized to perform: codebuild:StartBuild') });
    await assert.rejects(withSdk(sdk.load).onEvent(request('Create')), /codebuild:StartBuild/);
  });

  test('an unknown request type is refused rather than answered with nothing', async () => {
    await assert.rejects(withSdk(fakeSdk().load).onEvent(request('Upsert')), /unknown RequestType Upsert/);
  });
});

describe('isComplete', () => {
  const polled = (status, logs) => {
    const sdk = fakeSdk({ BatchGetBuildsCommand: build(status, logs) });
    return { sdk, run: () => withSdk(sdk.load).isComplete({ ...request('Create'), BuildId: BUILD_ID }) };
  };

  test('SUCCEEDED completes with the Status and LogsUrl the library report reads', async () => {
    const { sdk, run } = polled('SUCCEEDED');
    assert.deepEqual(await run(), { IsComplete: true, Data: { Status: 'CodeBuild completed successfully', LogsUrl: LOGS } });
    assert.deepEqual(sdk.sent, [{ client: 'CodeBuildClient', command: 'BatchGetBuildsCommand', input: { ids: [BUILD_ID] } }]);
  });

  test('IN_PROGRESS is not complete and carries no Data (the provider rejects Data there)', async () => {
    const { run } = polled('IN_PROGRESS');
    assert.deepEqual(await run(), { IsComplete: false });
  });

  for (const status of ['FAILED', 'FAULT', 'TIMED_OUT', 'STOPPED']) {
    test(`${status} fails at once, naming the status and linking the build's logs`, async () => {
      const { run } = polled(status);
      await assert.rejects(run(), (e) => {
        assert.ok(e.message.includes(status), e.message);
        assert.ok(e.message.includes(LOGS), e.message);
        assert.ok(e.message.includes(BUILD_ID), e.message);
        return true;
      });
    });
  }

  test('a final status without logs still fails, and says there is no link', async () => {
    const { run } = polled('FAULT', null);
    await assert.rejects(run(), /CodeBuild FAULT: .*check the logs here: none/);
  });

  test('a build id CodeBuild does not know is an error', async () => {
    const sdk = fakeSdk({ BatchGetBuildsCommand: { builds: [], buildsNotFound: [BUILD_ID] } });
    await assert.rejects(withSdk(sdk.load).isComplete({ BuildId: BUILD_ID }), /Build does not exist for BuildId/);
  });

  test('no BuildId from onEvent is an error', async () => {
    await assert.rejects(withSdk(fakeSdk().load).isComplete(request('Create')), /BuildId was not found/);
  });
});

describe('through the provider framework', () => {
  test('a build that runs, then succeeds: SUCCESS with the report attributes', async () => {
    const statuses = ['IN_PROGRESS', 'IN_PROGRESS', 'SUCCEEDED'];
    const sdk = fakeSdk({
      StartBuildCommand: { build: { id: BUILD_ID } },
      BatchGetBuildsCommand: () => build(statuses.shift()),
    });
    const answer = await provider(withSdk(sdk.load), request('Create'));
    assert.deepEqual(answer, { Status: 'SUCCESS', PhysicalResourceId: 'req-1', Data: { Status: 'CodeBuild completed successfully', LogsUrl: LOGS }, polls: 3 });
    // One client per service, kept across invocations of a warm function.
    assert.deepEqual(sdk.clients, ['CodeBuildClient']);
  });

  test('an Update keeps the physical id (no replacement, no Delete of the old copy)', async () => {
    const sdk = fakeSdk({ StartBuildCommand: { build: { id: BUILD_ID } }, BatchGetBuildsCommand: build('SUCCEEDED') });
    const answer = await provider(withSdk(sdk.load), request('Update'));
    assert.equal(answer.PhysicalResourceId, 'req-0');
  });

  test('a build that times out fails on the first poll that sees it, not after 30 minutes', async () => {
    const statuses = ['IN_PROGRESS', 'TIMED_OUT'];
    const sdk = fakeSdk({ StartBuildCommand: { build: { id: BUILD_ID } }, BatchGetBuildsCommand: () => build(statuses.shift()) });
    const answer = await provider(withSdk(sdk.load), request('Create'));
    assert.equal(answer.Status, 'FAILED');
    assert.equal(answer.polls, 2);
    assert.match(answer.Reason, /TIMED_OUT/);
  });
});

describe('a destination that already holds the tag (optional properties)', () => {
  const DEST = { DestinationRepositoryName: 'ecsdemo-crystal', DestinationTag: 'b'.repeat(64) };
  const withDest = (type) => request(type, { ResourceProperties: { ...PROPS, ...DEST } });

  test('is reported complete without a build', async () => {
    const sdk = fakeSdk({ DescribeImagesCommand: { imageDetails: [{ imageDigest: 'sha256:' + 'c'.repeat(64), imageTags: [DEST.DestinationTag] }] } });
    const answer = await provider(withSdk(sdk.load), withDest('Create'));
    assert.equal(answer.Status, 'SUCCESS');
    assert.deepEqual(answer.Data, { Status: `ecsdemo-crystal:${DEST.DestinationTag} already exists, no build started`, LogsUrl: 'none' });
    assert.deepEqual(sdk.sent, [{ client: 'ECRClient', command: 'DescribeImagesCommand', input: { repositoryName: 'ecsdemo-crystal', imageIds: [{ imageTag: DEST.DestinationTag }] } }]);
  });

  test('when the tag is absent (ImageNotFoundException), the copy runs', async () => {
    const sdk = fakeSdk({ DescribeImagesCommand: awsError('ImageNotFoundException'), StartBuildCommand: { build: { id: BUILD_ID } } });
    assert.deepEqual(await withSdk(sdk.load).onEvent(withDest('Update')), { BuildId: BUILD_ID });
    assert.deepEqual(sdk.commands(), ['DescribeImagesCommand', 'StartBuildCommand']);
  });

  test('when the check itself fails (no permission), the copy runs as the library would', async (t) => {
    t.mock.method(console, 'warn', () => {});
    const sdk = fakeSdk({ DescribeImagesCommand: awsError('AccessDeniedException'), StartBuildCommand: { build: { id: BUILD_ID } } });
    assert.deepEqual(await withSdk(sdk.load).onEvent(withDest('Create')), { BuildId: BUILD_ID });
    assert.equal(console.warn.mock.calls.length, 1);
  });

  test('only with both names: a repository alone does not skip anything', async () => {
    const sdk = fakeSdk({ StartBuildCommand: { build: { id: BUILD_ID } } });
    await withSdk(sdk.load).onEvent(request('Create', { ResourceProperties: { ...PROPS, DestinationRepositoryName: 'r' } }));
    assert.deepEqual(sdk.commands(), ['StartBuildCommand']);
  });
});

describe('as CloudFormation deploys it (Code.ZipFile, written as index.js)', () => {
  const source = fs.readFileSync(SOURCE, 'utf8');

  test('fits the inline limits we hold ourselves to: under 4096 bytes, CommonJS, no bundled dependency', () => {
    assert.ok(Buffer.byteLength(source) < 4096, `${Buffer.byteLength(source)} bytes`);
    assert.doesNotMatch(source, /^\s*(import|export)\s/m);
    // Only the SDK v3 clients the nodejs24.x runtime bundles, loaded through the injectable loader.
    assert.deepEqual([...source.matchAll(/'(@[^']+)'/g)].map((m) => m[1]).sort(), ['@aws-sdk/client-codebuild', '@aws-sdk/client-ecr']);
    assert.deepEqual([...source.matchAll(/require\b[^;]*/g)].map((m) => m[0]), ['require)']);
  });

  test('loads with no SDK installed, answers Delete, and reaches for the runtime SDK only on Create', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'image-copy-'));
    try {
      fs.copyFileSync(SOURCE, path.join(dir, 'index.js'));
      const script = `
        const index = require('./index.js');
        (async () => {
          const out = { exports: Object.keys(index).sort(), del: await index.onEvent({ RequestType: 'Delete' }) };
          try { await index.onEvent({ RequestType: 'Create', ResourceProperties: { projectName: 'p' } }); } catch (e) { out.create = e.code + ' ' + e.message.split('\\n')[0]; }
          console.log(JSON.stringify(out));
        })();`;
      const out = JSON.parse(execFileSync(process.execPath, ['-e', script], { cwd: dir, encoding: 'utf8' }));
      assert.deepEqual(out.exports, ['isComplete', 'onEvent', 'withSdk']);
      assert.deepEqual(out.del, { BuildId: 'onDelete' });
      assert.match(out.create, /^MODULE_NOT_FOUND Cannot find module '@aws-sdk\/client-codebuild'/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
