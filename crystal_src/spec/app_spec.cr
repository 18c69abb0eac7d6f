require "./spec_helper"

HELLO_RE = /\ACrystal backend: Hello! from us-east-1a commit CANARY at (\d{13})\z/

describe CrystalBackend::App do
  app = CrystalBackend::App.new("us-east-1a")

  it "embeds the trimmed code hash at compile time" do
    CrystalBackend::CODE_HASH.should eq("CANARY")
    app.code_hash.should eq("CANARY")
  end

  {"/crystal", "/crystal/"}.each do |path|
    it "GET #{path} says hello with AZ, commit and epoch ms" do
      before = Time.utc.to_unix_ms
      response = call_handler(app, "GET", path)
      after = Time.utc.to_unix_ms
      response.status_code.should eq(200)
      response.content_type.should eq("text/plain")
      response.headers["Content-Length"].should eq(response.body.bytesize.to_s)
      match = HELLO_RE.match(response.body).should_not be_nil
      match[1].to_i64.should be >= before
      match[1].to_i64.should be <= after
    end
  end

  it "reports an increasing epoch ms between two calls" do
    first = HELLO_RE.match(call_handler(app, "GET", "/crystal").body).not_nil![1].to_i64
    sleep 5.milliseconds
    second = HELLO_RE.match(call_handler(app, "GET", "/crystal").body).not_nil![1].to_i64
    second.should be > first
  end

  {"/crystal/api", "/crystal/api/"}.each do |path|
    it "GET #{path} returns the JSON document" do
      response = call_handler(app, "GET", path)
      response.status_code.should eq(200)
      response.content_type.should eq("application/json")
      JSON.parse(response.body).should eq(JSON.parse(%({"from":"Crystal backend","message":"us-east-1a","commit":"CANARY"})))
    end
  end

  it "escapes the AZ message in JSON" do
    odd = CrystalBackend::App.new(%(a"b\\c\n), "CANARY")
    body = call_handler(odd, "GET", "/crystal/api").body
    JSON.parse(body)["message"].as_s.should eq(%(a"b\\c\n))
  end

  it "answers /health with 200" do
    response = call_handler(app, "GET", "/health")
    response.status_code.should eq(200)
    response.body.should eq("OK\n")
  end

  it "ignores the query string when routing" do
    call_handler(app, "GET", "/crystal/api?x=1").status_code.should eq(200)
    call_handler(app, "GET", "/crystal/?").status_code.should eq(200)
  end

  it "routes absolute-form request targets by their path" do
    call_handler(app, "GET", "http://backend.local/crystal/api?x=1").status_code.should eq(200)
  end

  it "extracts the path like HTTP::Request#path does" do
    {"/crystal", "/crystal?x=1", "/a%20b?c", "/?", "http://h:1/p?q", "*"}.each do |target|
      request = HTTP::Request.new("GET", target)
      app.request_path(request).should eq(HTTP::Request.new("GET", target).path)
    end
  end

  {"http://x:99999999999/crystal", "http://x:1a/crystal?q"}.each do |target|
    it "answers 400 with an access log line for the unparseable target #{target}" do
      app.request_path(HTTP::Request.new("GET", target)).should be_nil
      Log.capture("access") do |logs|
        response = call_handler(app, "GET", target)
        response.status_code.should eq(400)
        response.body.should eq("Bad Request\n")
        logs.check(:info, "request")
        logs.entry.data[:path].should eq(target.partition('?')[0])
        logs.entry.data[:status].should eq(400)
      end
    end
  end

  {"/", "/crystalx", "/crystal/api/x", "/health/", "/CRYSTAL"}.each do |path|
    it "answers 404 for #{path}" do
      call_handler(app, "GET", path).status_code.should eq(404)
    end
  end

  it "answers 404 for unknown paths whatever the method" do
    call_handler(app, "POST", "/nope").status_code.should eq(404)
  end

  {"POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "FOO"}.each do |method|
    {"/crystal", "/crystal/api/", "/health"}.each do |path|
      it "answers 405 with Allow for #{method} #{path}" do
        response = call_handler(app, method, path)
        response.status_code.should eq(405)
        response.headers["Allow"].should eq("GET, HEAD")
      end
    end
  end

  {"/crystal", "/crystal/api", "/health"}.each do |path|
    it "HEAD #{path} sends headers without a body" do
      io = IO::Memory.new
      response = HTTP::Server::Response.new(io)
      app.call(HTTP::Server::Context.new(HTTP::Request.new("HEAD", path), response))
      response.close
      raw = io.to_s
      head, _, body = raw.partition("\r\n\r\n")
      head.should start_with("HTTP/1.1 200 OK")
      head.should match(/Content-Length: [1-9]\d*/)
      body.should eq("")
    end
  end

  it "writes one access log entry per request" do
    Log.capture("access") do |logs|
      call_handler(app, "GET", "/crystal/api")
      call_handler(app, "DELETE", "/health")
      logs.check(:info, "request")
      logs.entry.data[:method].should eq("GET")
      logs.entry.data[:path].should eq("/crystal/api")
      logs.entry.data[:status].should eq(200)
      # Value#as_f casts to Float32 on Crystal 1.6, so check the raw value.
      logs.entry.data[:duration_ms].raw.as(Float64).should be >= 0.0
      logs.next(:info, "request")
      logs.entry.data[:status].should eq(405)
      logs.empty
    end
  end

  it "asks keep-alive clients to close once draining" do
    draining = CrystalBackend::App.new("x")
    call_handler(draining, "GET", "/health").headers["Connection"]?.should be_nil
    draining.start_draining
    call_handler(draining, "GET", "/health").headers["Connection"].should eq("close")
  end

  it "waits at least the grace period, then reports drained" do
    idle = CrystalBackend::App.new("x")
    started = Time.monotonic
    idle.wait_until_drained(1.second, grace: 50.milliseconds).should be_true
    (Time.monotonic - started).should be >= 50.milliseconds
  end

  it "serves over a real socket, keep-alive included" do
    with_server(app) do |port|
      client = HTTP::Client.new("127.0.0.1", port)
      client.get("/crystal").body.should match(HELLO_RE)
      client.get("/crystal/api").content_type.should eq("application/json")
      client.head("/crystal").headers["Content-Length"].to_i.should be > 0
      client.get("/health").status_code.should eq(200)
      client.post("/crystal", body: "ignored").status_code.should eq(405)
      client.get("/missing").status_code.should eq(404)
      client.close
    end
  end
end
