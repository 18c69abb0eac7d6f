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
