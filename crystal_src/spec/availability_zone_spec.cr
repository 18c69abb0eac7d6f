require "./spec_helper"

# A fake ECS task metadata endpoint answering /v4/test/task with *status* and *body*.
def with_metadata(body : String, status = 200, delay : Time::Span? = nil, &)
  handler = HTTP::Handler::HandlerProc.new do |ctx|
    sleep delay if delay
    if ctx.request.path == "/v4/test/task"
      ctx.response.status_code = status
      ctx.response.content_type = "application/json"
      ctx.response.print body
    else
      ctx.response.status_code = 404
    end
  end
  with_server(handler) { |port| yield "http://127.0.0.1:#{port}/v4/test" }
end

AZ        = CrystalBackend::AvailabilityZone
TASK_JSON = %({"Cluster":"c","TaskARN":"arn:aws:ecs:us-east-1:1:task/c/1","AvailabilityZone":"us-east-1b","Containers":[]})

describe CrystalBackend::AvailabilityZone do
  describe ".parse_task" do
    it "reads AvailabilityZone" do
      AZ.parse_task(TASK_JSON).should eq("us-east-1b")
    end

    {
      "not json"         => "<html>oops</html>",
      "empty"            => "",
      "array"            => %([1,2]),
      "missing field"    => %({"Cluster":"c"}),
      "number"           => %({"AvailabilityZone":42}),
      "null"             => %({"AvailabilityZone":null}),
      "blank"            => %({"AvailabilityZone":"  "}),
      "too long"         => %({"AvailabilityZone":"#{"a" * 200}"}),
      "truncated"        => %({"AvailabilityZone":"us-ea),
      "top-level string" => %("us-east-1a"),
    }.each do |name, body|
      it "returns nil for #{name}" do
        AZ.parse_task(body).should be_nil
      end
    end
  end

  describe ".fetch" do
    it "gets the AZ from <uri>/task" do
      with_metadata(TASK_JSON) { |uri| AZ.fetch(uri).should eq("us-east-1b") }
    end

    it "tolerates a trailing slash" do
      with_metadata(TASK_JSON) { |uri| AZ.fetch(uri + "/").should eq("us-east-1b") }
    end

    it "returns nil on junk" do
      with_metadata("junk{") { |uri| AZ.fetch(uri).should be_nil }
    end

    it "returns nil on HTTP errors" do
      with_metadata(TASK_JSON, status: 500) { |uri| AZ.fetch(uri).should be_nil }
    end

    it "returns nil on an oversized body" do
      big = %({"AvailabilityZone":"us-east-1b","x":"#{"a" * 100_000}"})
      with_metadata(big) { |uri| AZ.fetch(uri).should be_nil }
    end

    it "returns nil when nothing listens" do
      AZ.fetch("http://127.0.0.1:#{free_port}/v4/test").should be_nil
    end

    it "returns nil for unusable URIs" do
      AZ.fetch("not a uri").should be_nil
      AZ.fetch("https://127.0.0.1:1/v4").should be_nil
    end

    it "gives up on a slow endpoint after the read timeout" do
      with_metadata(TASK_JSON, delay: 2.seconds) do |uri|
        started = Time.monotonic
        AZ.fetch(uri, timeout: 200.milliseconds).should be_nil
        (Time.monotonic - started).should be < 1.second
      end
    end

    it "enforces an overall deadline" do
      with_metadata(TASK_JSON, delay: 2.seconds) do |uri|
        started = Time.monotonic
        AZ.fetch_with_deadline(uri, timeout: 5.seconds, deadline: 200.milliseconds).should be_nil
        (Time.monotonic - started).should be < 1.second
      end
    end
  end

  describe ".resolve" do
    it "prefers the metadata endpoint" do
      with_metadata(TASK_JSON) do |uri|
        AZ.resolve(CrystalBackend::Config.new(az_env: "env-az", metadata_uri: uri)).should eq("us-east-1b")
      end
    end

    it "falls back to AZ env when metadata is junk" do
      with_metadata("nope") do |uri|
        AZ.resolve(CrystalBackend::Config.new(az_env: "env-az", metadata_uri: uri)).should eq("env-az")
      end
    end

    it "falls back to AZ env when metadata is down" do
      uri = "http://127.0.0.1:#{free_port}/v4/test"
      AZ.resolve(CrystalBackend::Config.new(az_env: "env-az", metadata_uri: uri)).should eq("env-az")
    end

    it "uses AZ env without a metadata endpoint" do
      AZ.resolve(CrystalBackend::Config.new(az_env: "env-az")).should eq("env-az")
    end

    it "falls back to unknown" do
      AZ.resolve(CrystalBackend::Config.new).should eq("unknown")
      with_metadata("{}") do |uri|
        AZ.resolve(CrystalBackend::Config.new(metadata_uri: uri)).should eq("unknown")
      end
    end
  end
end
