// The integration test's traffic-split probe (Lambda, nodejs24.x, inline code: CommonJS, no
// dependencies). HttpApiCall makes one request; the weight is a property of many, so this function
// makes `requests` GETs to `url` without the test header and counts the answers whose JSON `commit`
// is the canary's. It returns counts and a verdict; the assertion compares the verdict.
//
// event: { url, requests, concurrency, canaryCommit, weight, tolerance, timeoutMs }
// returns: { requests, answered, failed, canary, share, weight, tolerance, withinTolerance, errors }
"use strict";

async function one(url, canaryCommit, timeoutMs, fetchImpl) {
  try {
    // A fresh connection per request is not needed: the load balancer picks a target group per
    // request, not per connection.
    const response = await fetchImpl(url, { signal: AbortSignal.timeout(timeoutMs) });
    const text = await response.text();
    if (response.status !== 200) return { failed: `HTTP ${response.status}` };
    let body;
    try {
      body = JSON.parse(text);
    } catch {
      return { failed: "not JSON" };
    }
    if (typeof body.commit !== "string") return { failed: "no commit" };
    return { canary: body.commit === canaryCommit };
  } catch (err) {
    return { failed: err && err.name ? err.name : String(err) };
  }
}

async function probe(event, fetchImpl = fetch) {
  const requests = Number(event.requests);
  const concurrency = Math.max(1, Math.min(Number(event.concurrency) || 8, requests));
  const weight = Number(event.weight);
  const tolerance = Number(event.tolerance);
  const timeoutMs = Number(event.timeoutMs) || 5000;
  if (!event.url || !event.canaryCommit || !(requests > 0) || !(weight >= 0) || !(tolerance >= 0)) {
    throw new Error("probe needs url, canaryCommit, requests > 0, weight >= 0 and tolerance >= 0");
  }
  let next = 0;
  let canary = 0;
  let answered = 0;
  const errors = {};
  async function worker() {
    while (next < requests) {
      next += 1;
      const result = await one(event.url, event.canaryCommit, timeoutMs, fetchImpl);
      if (result.failed) {
        errors[result.failed] = (errors[result.failed] || 0) + 1;
      } else {
        answered += 1;
        if (result.canary) canary += 1;
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker));
  const failed = requests - answered;
  // The share of all requests, failures included: a failing canary must not look like a small one.
  const share = Math.round((canary / requests) * 10000) / 100;
  return {
    requests,
    answered,
    failed,
    canary,
    share,
    weight,
    tolerance,
    withinTolerance: failed === 0 && Math.abs(share - weight) <= tolerance,
    errors,
  };
}

exports.handler = async (event) => probe(event);
exports.probe = probe;
