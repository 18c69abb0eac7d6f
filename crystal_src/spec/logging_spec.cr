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

private def entry(message : String) : Log::Entry
  Log::Entry.new("spec", :info, message, Log::Metadata.empty, nil)
end

# Waits until *condition* holds (the backend writes from its own fiber).
private def eventually(&condition : -> Bool) : Nil
  deadline = Time.monotonic + 2.seconds
  until condition.call
    fail "condition not met within 2 s" if Time.monotonic > deadline
    sleep 1.millisecond
  end
end

# Fails every write while *broken*, like stdout once its reader is gone (EPIPE).
private class BreakableIO < IO
  property? broken = true
  getter written = IO::Memory.new

  def read(slice : Bytes) : Int32
    0
  end

  def write(slice : Bytes) : Nil
    raise IO::Error.new("Broken pipe") if broken?
    written.write(slice)
  end
end

# A write that never returns until released, like a pipe nobody reads.
private class StuckIO < IO
  getter gate = Channel(Nil).new

  def read(slice : Bytes) : Int32
    0
  end

  def write(slice : Bytes) : Nil
    gate.receive
  end
end

describe CrystalBackend::DroppingIOBackend do
  it "writes one JSON line per entry" do
    io = IO::Memory.new
    backend = CrystalBackend::DroppingIOBackend.new(io)
    backend.write(entry("one"))
    backend.write(entry("two"))
    backend.close
    io.to_s.lines.map { |line| JSON.parse(line)["msg"] }.should eq(["one", "two"])
    backend.dropped.should eq(0)
  end

  it "survives write errors, counts the lost lines and says so in front of the next line" do
    io = BreakableIO.new
    stderr = IO::Memory.new
    backend = CrystalBackend::DroppingIOBackend.new(io, stderr: stderr)
    3.times { |i| backend.write(entry("lost #{i}")) }
    eventually { backend.dropped == 3 }
    io.broken = false
    backend.write(entry("kept"))
    eventually { io.written.to_s.lines.size == 2 }
    lines = io.written.to_s.lines.map { |line| JSON.parse(line) }
    {lines[0]["msg"], lines[0]["level"], lines[0]["source"], lines[0]["dropped"]}.should eq(
      {"log lines dropped", "WARN", "crystal_backend.log", 3})
    lines[1]["msg"].should eq("kept")
    backend.close
    # The total also goes to stderr at close.
    JSON.parse(stderr.to_s)["dropped"].should eq(3)
  end

  it "never makes the caller wait: a full queue drops and counts" do
    io = StuckIO.new
    backend = CrystalBackend::DroppingIOBackend.new(io, queue_size: 4, close_timeout: 50.milliseconds,
      stderr: IO::Memory.new)
    started = Time.monotonic
    100.times { |i| backend.write(entry("line #{i}")) }
    Fiber.yield # the writer takes one line and gets stuck writing it
    100.times { |i| backend.write(entry("more #{i}")) }
    (Time.monotonic - started).should be < 1.second
    # 4 queued and 1 in the writer's hands; the rest dropped.
    backend.dropped.should eq(200 - 5)
    backend.close
  end

  it "gives up on a stuck writer at close after close_timeout and reports on stderr" do
    io = StuckIO.new
    stderr = IO::Memory.new
    backend = CrystalBackend::DroppingIOBackend.new(io, close_timeout: 100.milliseconds, stderr: stderr)
    3.times { |i| backend.write(entry("line #{i}")) }
    Fiber.yield
    started = Time.monotonic
    backend.close
    (Time.monotonic - started).should be < 1.second
    # The two still queued are lost; the one being written may still make it.
    backend.dropped.should eq(2)
    line = JSON.parse(stderr.to_s)
    {line["msg"], line["dropped"]}.should eq({"log lines dropped", 2})
  end

  it "counts lines logged after close instead of raising" do
    backend = CrystalBackend::DroppingIOBackend.new(IO::Memory.new, stderr: IO::Memory.new)
    backend.close
    backend.write(entry("late"))
    backend.dropped.should eq(1)
  end
end

describe CrystalBackend::LogThrottle do
  it "lets one message through per interval and counts the rest" do
    throttle = CrystalBackend::LogThrottle.new(1.second)
    t0 = Time::Span.zero
    throttle.allow?(t0).should eq(0)
    throttle.allow?(t0 + 10.milliseconds).should be_nil
    throttle.allow?(t0 + 990.milliseconds).should be_nil
    throttle.suppressed.should eq(2)
    throttle.allow?(t0 + 1.second).should eq(2)
    throttle.suppressed.should eq(0)
  end

  it "reports what was held back once an interval has passed, sharing the budget with allow?" do
    throttle = CrystalBackend::LogThrottle.new(1.second)
    t0 = Time::Span.zero
    throttle.summary?(t0).should be_nil # nothing held back
    throttle.allow?(t0).should eq(0)
    throttle.allow?(t0 + 1.millisecond).should be_nil
    throttle.summary?(t0 + 500.milliseconds).should be_nil # too soon
    throttle.summary?(t0 + 1.second).should eq(1)
    throttle.allow?(t0 + 1.5.seconds).should be_nil # the summary used this interval's line
    throttle.take_suppressed.should eq(1)
    throttle.suppressed.should eq(0)
  end
end
