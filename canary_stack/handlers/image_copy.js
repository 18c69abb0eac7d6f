// cdk-docker-image-deployment's onEvent/isComplete, for nodejs24.x and its bundled AWS SDK v3
// (nodejs16.x, the only runtime with aws-sdk v2, loses function create on 2027-02-01).
// Inline as Code.ZipFile: CloudFormation writes it as index.js, a CommonJS module, zip <= 4 MB
// https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-properties-lambda-function-code.html
// https://docs.aws.amazon.com/lambda/latest/dg/lambda-nodejs.html#nodejs-sdk-included
// Handlers are async: Node.js 24 has no callback handlers. The SDK loads on first use, so
// tests can hand in their own modules (withSdk) with no SDK installed and no network.
'use strict';
const DELETE = 'onDelete'; // the library's marker: nothing to wait for
const PRESENT = 'onPresent'; // the destination already holds the tag: nothing was started

function withSdk(load) {
  const made = {};
  const client = (pkg, cls) => made[pkg] || (made[pkg] = new (load(pkg)[cls])({}));
  const send = (pkg, cls, cmd, input) => client(pkg, cls).send(new (load(pkg)[cmd])(input));
  const codebuild = (cmd, input) => send('@aws-sdk/client-codebuild', 'CodeBuildClient', cmd, input);

  // Optional (not in the library): with the destination named, a deploy that finds the tag
  // already pushed succeeds without a build, where a re-push to an immutable tag would fail.
  async function present(repositoryName, imageTag) {
    try {
      const out = await send('@aws-sdk/client-ecr', 'ECRClient', 'DescribeImagesCommand', {
        repositoryName,
        imageIds: [{ imageTag }],
      });
      return (out.imageDetails || []).length > 0;
    } catch (e) {
      if (e.name !== 'ImageNotFoundException') console.warn('cannot check the destination, copying:', e);
      return false;
    }
  }

  async function onEvent(event) {
    if (event.RequestType === 'Delete') return { BuildId: DELETE };
    if (event.RequestType !== 'Create' && event.RequestType !== 'Update') {
      throw new Error(`unknown RequestType ${event.RequestType}`);
    }
    const p = event.ResourceProperties || {};
    if (p.DestinationRepositoryName && p.DestinationTag && (await present(p.DestinationRepositoryName, p.DestinationTag))) {
      return { BuildId: PRESENT };
    }
    const out = await codebuild('StartBuildCommand', { projectName: p.projectName });
    const id = out.build && out.build.id;
    if (!id) throw new Error('BuildId does not exist after CodeBuild:StartBuild call');
    return { BuildId: id };
  }

  async function isComplete(event) {
    const id = event.BuildId;
    if (!id) throw new Error('BuildId was not found or undefined');
    if (id === DELETE) return { IsComplete: true };
    if (id === PRESENT) {
      const p = event.ResourceProperties || {};
      const Status = `${p.DestinationRepositoryName}:${p.DestinationTag} already exists, no build started`;
      return { IsComplete: true, Data: { Status, LogsUrl: 'none' } };
    }
    const out = await codebuild('BatchGetBuildsCommand', { ids: [id] });
    const build = (out.builds || [])[0];
    if (!build) throw new Error(`Build does not exist for BuildId: ${id}`);
    const status = build.buildStatus;
    const link = (build.logs && build.logs.deepLink) || 'none';
    if (!status || status === 'IN_PROGRESS') return { IsComplete: false };
    if (status === 'SUCCEEDED') {
      return { IsComplete: true, Data: { Status: 'CodeBuild completed successfully', LogsUrl: link } };
    }
    // FAILED, FAULT, TIMED_OUT, STOPPED: fail now, not after the provider's 30-minute timeout.
    throw new Error(`CodeBuild ${status}: build ${id}, check the logs here: ${link}`);
  }

  return { onEvent, isComplete };
}

const runtime = withSdk(require);
exports.onEvent = runtime.onEvent;
exports.isComplete = runtime.isComplete;
exports.withSdk = withSdk;
