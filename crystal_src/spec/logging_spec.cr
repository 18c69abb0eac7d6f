require "./spec_helper"

private def format_entry(data, message = "request", exception : Exception? = nil) : String
  entry = Log::Entry.new("access", :info, message, Log::Metadata.build(data), exception)
  io = IO::Memory.new
  CrystalBackend::JsonLogFormat.new.format(entry, io)
  io.to_s
end

# A `Log` writing JSON lines into *io* at once (no async dispatch), as
# `setup_logging` configures it apart from the dispatcher.
private def json_log(io : IO, source = "access", level : Log::Severity = :info) : Log
  Log.new(source, Log::IOBackend.new(io, formatter: CrystalBackend::JsonLogFormat.new, dispatcher: :sync), level)
end

describe CrystalBackend::JsonLogFormat do
  it "writes one JSON object with timestamp, level, source, message and data" do
    line = format_entry({method: "GET", path: "/crystal", status: 200, duration_ms: 0.021})
    line.should_not contain('\n')
    json = JSON.parse(line)
    json.as_h.keys.should eq(%w(ts level source msg method path status duration_ms))
    json["ts"].as_s.should match(/\A\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z\z/)
    (Time.parse_rfc3339(json["ts"].as_s) - Time.utc).abs.should be < 5.seconds
    json["level"].should eq("INFO")
    json["source"].should eq("access")
    json["msg"].should eq("request")
    json["method"].should eq("GET")
    json["path"].should eq("/crystal")
    json["status"].should eq(200)
    json["duration_ms"].as_f.should eq(0.021)
  end

  it "escapes hostile strings" do
    path = "/\"quoted\"\\back\nnew\tline\u0000é</script>"
    line = format_entry({path: path}, message: "m\"sg")
    line.should_not contain('\n')
    JSON.parse(line)["path"].should eq(path)
    JSON.parse(line)["msg"].should eq("m\"sg")
  end

  {0.0, 0.021, 5.0, 12.3, 123.456, 1.0e7, -1.5, 1.0e-9}.each do |value|
    it "round-trips the float #{value}" do
      JSON.parse(format_entry({d: value}))["d"].as_f.should eq(value)
    end
  end

  it "writes non-finite floats as null instead of raising" do
    json = JSON.parse(format_entry({nan: Float64::NAN, inf: Float64::INFINITY, f32: Float32::NAN}))
    json["nan"].raw.should be_nil
    json["inf"].raw.should be_nil
    json["f32"].raw.should be_nil
  end

  it "writes booleans, nil and nested values" do
    json = JSON.parse(format_entry({b: true, n: nil, list: [1, 2]}))
    json["b"].should eq(true)
    json["n"].raw.should be_nil
    json["list"].should eq(JSON.parse("[1,2]"))
  end

  it "includes the exception" do
    JSON.parse(format_entry({x: 1}, exception: ArgumentError.new("boom")))["error"].should eq("ArgumentError: boom")
  end
end

describe "CrystalBackend access log" do
  it "writes one JSON line per request with method, path without query, status and duration" do
    io = IO::Memory.new
    app = CrystalBackend::App.new("us-east-1a", access_log: json_log(io))
    call_handler(app, "GET", "/crystal/api?x=1")
    call_handler(app, "HEAD", "/nope?")
    call_handler(app, "GET", "http://backend.local/health?x")
    call_handler(app, "DELETE", "/health")
    lines = io.to_s.lines.map { |line| JSON.parse(line) }
    lines.map { |json| {json["method"], json["path"], json["status"], json["source"], json["msg"], json["level"]} }.should eq([
      {"GET", "/crystal/api", 200, "access", "request", "INFO"},
      {"HEAD", "/nope", 404, "access", "request", "INFO"},
      {"GET", "/health", 200, "access", "request", "INFO"},
      {"DELETE", "/health", 405, "access", "request", "INFO"},
    ])
    lines.each(&.["duration_ms"].as_f.should(be >= 0.0))
  end

  it "escapes odd paths" do
    io = IO::Memory.new
    app = CrystalBackend::App.new("x", access_log: json_log(io))
    call_handler(app, "GET", "/a\"b\\c?q=\"x")
    JSON.parse(io.to_s)["path"].should eq("/a\"b\\c")
  end

  it "writes at debug and info, nothing above info" do
    {Log::Severity::Debug => 1, Log::Severity::Info => 1, Log::Severity::Notice => 0,
     Log::Severity::Warn => 0, Log::Severity::None => 0}.each do |level, count|
      io = IO::Memory.new
      app = CrystalBackend::App.new("x", access_log: json_log(io, level: level))
      call_handler(app, "GET", "/crystal")
      io.to_s.lines.size.should eq(count)
    end
  end
end

describe "CrystalBackend.setup_logging" do
  it "sends every source, access included, as JSON lines to the given IO" do
    io = IO::Memory.new
    CrystalBackend.setup_logging(:info, io)
    begin
      Log.for("access").info &.emit("request", method: "GET", path: "/", status: 200, duration_ms: 0.5)
      Log.for("crystal_backend").debug { "hidden" }
      Log.for("crystal_backend").warn { "careful" }
      deadline = Time.monotonic + 2.seconds
      while io.to_s.lines.size < 2 && Time.monotonic < deadline
        sleep 1.millisecond
      end
      lines = io.to_s.lines.map { |line| JSON.parse(line) }
      lines.map { |json| {json["source"], json["msg"]} }.should eq([{"access", "request"}, {"crystal_backend", "careful"}])
    ensure
      Log.setup(:none)
    end
  end
end
