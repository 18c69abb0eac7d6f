require "./spec_helper"

private def format_entry(data, message = "request", exception : Exception? = nil) : String
  entry = Log::Entry.new("access", :info, message, Log::Metadata.build(data), exception)
  io = IO::Memory.new
  CrystalBackend::JsonLogFormat.new.format(entry, io)
  io.to_s
end

describe CrystalBackend::JsonLogFormat do
  it "writes one JSON object with timestamp, level, source, message and data" do
    line = format_entry({method: "GET", path: "/crystal", status: 200, duration_ms: 0.021})
    line.should_not contain('\n')
    json = JSON.parse(line)
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
    JSON.parse(format_entry({path: path}, message: "m\"sg"))["path"].should eq(path)
  end

  {0.0, 0.021, 5.0, 12.3, 123.456, 999_999.999, 1.0e7, 0.1234, -1.5, 1.0e-9}.each do |value|
    it "round-trips the float #{value}" do
      JSON.parse(format_entry({d: value}))["d"].as_f.should eq(value)
    end
  end

  it "writes non-finite floats as null" do
    JSON.parse(format_entry({d: Float64::NAN}))["d"].raw.should be_nil
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

describe CrystalBackend::BufferedLogBackend do
  it "buffers lines and writes them on flush and close" do
    io = IO::Memory.new
    backend = CrystalBackend::BufferedLogBackend.new(io, flush_interval: 1.hour)
    log = Log.new("t", backend, :info)
    log.info { "one" }
    log.info { "two" }
    io.size.should eq(0)
    backend.flush
    io.to_s.lines.map { |line| JSON.parse(line)["msg"] }.should eq(["one", "two"])
    log.info { "three" }
    backend.close
    io.to_s.lines.size.should eq(3)
  end

  it "writes warnings at once" do
    io = IO::Memory.new
    backend = CrystalBackend::BufferedLogBackend.new(io, flush_interval: 1.hour)
    Log.new("t", backend, :info).warn { "careful" }
    io.to_s.should contain("careful")
  end

  it "flushes periodically" do
    io = IO::Memory.new
    backend = CrystalBackend::BufferedLogBackend.new(io, flush_interval: 10.milliseconds)
    Log.new("t", backend, :info).info { "later" }
    sleep 100.milliseconds
    io.to_s.should contain("later")
    backend.close
  end
end

# Logs one request through an AccessLogger on a BufferedLogBackend and returns
# the written lines.
private def access_lines(level : Log::Severity = :info, &) : Array(String)
  io = IO::Memory.new
  backend = CrystalBackend::BufferedLogBackend.new(io, flush_interval: 1.hour)
  yield CrystalBackend::AccessLogger.new(Log.new("access", backend, level))
  backend.close
  io.to_s.lines
end

describe CrystalBackend::AccessLogger do
  it "writes the same JSON line as JsonLogFormat, without a Log::Entry" do
    lines = access_lines(&.log("GET", "/crystal/api?x=1", 12, 200, 21.microseconds + 400.nanoseconds))
    lines.size.should eq(1)
    json = JSON.parse(lines[0])
    json.as_h.keys.should eq(%w(ts level source msg method path status duration_ms))
    json["ts"].as_s.should match(/\A\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z\z/)
    (Time.parse_rfc3339(json["ts"].as_s) - Time.utc).abs.should be < 5.seconds
    expected = format_entry({method: "GET", path: "/crystal/api", status: 200, duration_ms: 0.021})
    lines[0].sub(/"ts":"[^"]*"/, "").should eq(expected.sub(/"ts":"[^"]*"/, ""))
  end

  it "keeps the timestamp right across second boundaries" do
    io = IO::Memory.new
    backend = CrystalBackend::BufferedLogBackend.new(io, flush_interval: 1.hour)
    logger = CrystalBackend::AccessLogger.new(Log.new("access", backend, :info))
    seconds = Set(Int64).new
    24.times do
      before = Time.utc
      logger.log("GET", "/", 1, 200, 0.seconds)
      after = Time.utc
      backend.flush
      ts = Time.parse_rfc3339(JSON.parse(io.to_s.lines.last)["ts"].as_s)
      ts.should be >= before.at_beginning_of_second + before.millisecond.milliseconds
      ts.should be <= after
      seconds << ts.to_unix
      sleep 50.milliseconds
    end
    seconds.size.should be >= 2
    backend.close
  end

  it "writes nothing, and is disabled, when the level is above info" do
    {Log::Severity::Notice, Log::Severity::Warn, Log::Severity::None}.each do |level|
      access_lines(level) do |logger|
        logger.enabled?.should be_false
        logger.log("GET", "/crystal", 8, 200, 1.millisecond)
      end.should be_empty
    end
  end

  it "writes at debug and info" do
    {Log::Severity::Debug, Log::Severity::Info}.each do |level|
      access_lines(level) do |logger|
        logger.enabled?.should be_true
        logger.log("GET", "/crystal", 8, 200, 1.millisecond)
      end.size.should eq(1)
    end
  end

  it "escapes odd paths and methods, and cuts the path at the given size" do
    path = "/\"quoted\"\\back\nnew\tline\u0000é</script>"
    lines = access_lines do |logger|
      logger.log("G\"ET", path + "?q=\"x", path.bytesize, 400, 0.seconds)
      logger.log("GET", path, path.bytesize, 404, 0.seconds)
      logger.log("GET", "/a?b", 2, 200, 0.seconds)
    end
    lines.size.should eq(3)
    JSON.parse(lines[0])["path"].should eq(path)
    JSON.parse(lines[0])["method"].should eq("G\"ET")
    JSON.parse(lines[1])["path"].should eq(path)
    JSON.parse(lines[2])["path"].should eq("/a")
  end

  {
    0.seconds                          => "0.000",
    400.nanoseconds                    => "0.000",
    500.nanoseconds                    => "0.001",
    21.microseconds + 499.nanoseconds  => "0.021",
    999.microseconds + 500.nanoseconds => "1.000",
    12.milliseconds + 300.microseconds => "12.300",
    2.seconds + 123.microseconds       => "2000.123",
    3.hours                            => "10800000.000",
  }.each do |duration, text|
    it "writes a duration of #{duration} as #{text} ms" do
      line = access_lines(&.log("GET", "/", 1, 200, duration))[0]
      line.should contain(%("duration_ms":#{text}}))
      JSON.parse(line)["duration_ms"].as_f.should eq(text.to_f)
    end
  end

  it "shares the backend's buffer with other sources, in order" do
    io = IO::Memory.new
    backend = CrystalBackend::BufferedLogBackend.new(io, flush_interval: 1.hour)
    Log.new("t", backend, :info).info { "before" }
    CrystalBackend::AccessLogger.new(Log.new("access", backend, :info)).log("GET", "/", 1, 200, 0.seconds)
    Log.new("t", backend, :info).info { "after" }
    io.size.should eq(0)
    backend.flush
    io.to_s.lines.map { |line| JSON.parse(line)["msg"] }.should eq(["before", "request", "after"])
    backend.close
  end

  it "emits a regular entry to other backends" do
    Log.capture("access") do |logs|
      CrystalBackend::AccessLogger.new.log("GET", "/x?y", 2, 201, 1.millisecond)
      logs.check(:info, "request")
      logs.entry.source.should eq("access")
      logs.entry.data[:method].should eq("GET")
      logs.entry.data[:path].should eq("/x")
      logs.entry.data[:status].should eq(201)
      logs.entry.data[:duration_ms].raw.should eq(1.0)
      logs.empty
    end
  end
end
