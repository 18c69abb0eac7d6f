// Moves a tag (epoch, vanilla) onto an image in ECR: BatchGetImage + PutImage, no rebuild.
// A Lambda-backed custom resource: it PUTs its answer to ResponseURL (body <= 4096 bytes)
// https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/crpg-ref-responses.html
// Inline (Code.ZipFile -> index.js, CommonJS) on nodejs24.x with its own SDK v3; async only.
'use strict';
const MEDIA_TYPES = ['docker.distribution.manifest.v2', 'docker.distribution.manifest.list.v2', 'oci.image.manifest.v1', 'oci.image.index.v1'].map((t) => `application/vnd.${t}+json`);

function withSdk(load, put = fetch) {
  let ecr;
  const send = (cmd, input) => {
    const sdk = load('@aws-sdk/client-ecr');
    ecr = ecr || new sdk.ECRClient({});
    return ecr.send(new sdk[cmd](input));
  };

  async function tag({ RepositoryName: repositoryName, SourceTag: source, Tag: imageTag }) {
    const got = await send('BatchGetImageCommand', {
      repositoryName,
      imageIds: [{ imageTag: source }],
      acceptedMediaTypes: MEDIA_TYPES,
    });
    const image = (got.images || [])[0];
    if (!image || !image.imageManifest) {
      const f = (got.failures || [])[0] || {};
      const why = [f.failureCode, f.failureReason].filter(Boolean).join(' ') || 'no image returned';
      throw new Error(`image ${repositoryName}:${source} is not in the repository: ${why}`);
    }
    const { imageManifest, imageManifestMediaType } = image;
    try {
      await send('PutImageCommand', { repositoryName, imageManifest, imageManifestMediaType, imageTag });
    } catch (e) {
      // The tag already names this manifest: the state we want (a re-run, a retried create).
      if (e.name !== 'ImageAlreadyExistsException') throw e;
    }
    return { ImageDigest: image.imageId?.imageDigest };
  }

  // Answer before Lambda's timeout, which would leave CloudFormation waiting for an hour.
  function withDeadline(work, context) {
    const left = (context?.getRemainingTimeInMillis?.() ?? 0) - 3000;
    if (left <= 0) return work;
    let timer;
    const late = new Promise((_, no) => (timer = setTimeout(no, left, new Error(`no answer from ECR within ${left} ms`))));
    return Promise.race([work, late]).finally(() => clearTimeout(timer));
  }

  async function respond(url, body) {
    for (let attempt = 1; ; attempt++) {
      try {
        // Content-Type '' as cfn-response sends it: the presigned URL signs none.
        const res = await put(url, { method: 'PUT', headers: { 'content-type': '' }, body });
        if (res.ok) return;
        throw new Error(`HTTP ${res.status}`);
      } catch (e) {
        console.error('response PUT failed:', e);
        if (attempt === 3) throw e;
        await new Promise((r) => setTimeout(r, 500 * attempt));
      }
    }
  }

  async function handler(event, context) {
    const p = event.ResourceProperties || {};
    const id = `${p.RepositoryName}:${p.Tag}`;
    const body = {
      Status: 'SUCCESS',
      PhysicalResourceId: event.PhysicalResourceId || id,
      StackId: event.StackId,
      RequestId: event.RequestId,
      LogicalResourceId: event.LogicalResourceId,
    };
    try {
      // Delete keeps the tag: it is history; the repository's lifecycle is the repository's.
      if (event.RequestType !== 'Delete') {
        const bad = ['RepositoryName', 'SourceTag', 'Tag'].filter((k) => typeof p[k] !== 'string' || !p[k]);
        if (bad.length) throw new Error(`${bad.join(', ')}: a non-empty string is required`);
        body.Data = await withDeadline(tag(p), context);
        body.PhysicalResourceId = id;
      }
    } catch (e) {
      console.error(e);
      body.Status = 'FAILED';
      const why = e.name && e.name !== 'Error' ? `${e.name}: ${e.message}` : e.message || e;
      body.Reason = String(why).replace(/\s+/g, ' ').trim().slice(0, 1000);
    }
    await respond(event.ResponseURL, JSON.stringify(body));
    return body;
  }

  return { handler };
}

exports.handler = withSdk(require).handler;
exports.withSdk = withSdk;
