require "./spec_helper"

describe CrystalBackend::Service do
  it "serves, survives a bad Content-Length, and returns from run after shutdown" do
    config = CrystalBackend::Config.new(host: "127.0.0.1", port: free_port)
    service = CrystalBackend::Service.new(config, "us-east-1a")
    address = service.bind
    done = Channel(Nil).new
    spawn do
      service.run
      done.send(nil)
    end
    Fiber.yield

    HTTP::Client.get("http://127.0.0.1:#{address.port}/crystal/api").body.should contain("us-east-1a")

    # The stdlib parser raises here; the connection must just be dropped.
    socket = TCPSocket.new("127.0.0.1", address.port)
    socket << "GET /crystal HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n"
    socket.flush
    reply = socket.gets
    (reply.nil? || reply.starts_with?("HTTP/1.1 400")).should be_true
    socket.close

    HTTP::Client.get("http://127.0.0.1:#{address.port}/health").status_code.should eq(200)

    started = Time.monotonic
    service.shutdown("spec")
    select
    when done.receive
    when timeout(5.seconds)
      fail "run did not return after shutdown"
    end
    (Time.monotonic - started).should be >= CrystalBackend::Config::SHUTDOWN_GRACE
    expect_raises(Socket::ConnectError) { HTTP::Client.get("http://127.0.0.1:#{address.port}/health") }
  end

  it "closes idle connections after the idle timeout" do
    config = CrystalBackend::Config.new(host: "127.0.0.1", port: free_port)
    service = CrystalBackend::Service.new(config, "x", idle_timeout: 100.milliseconds)
    address = service.bind
    spawn { service.run }
    Fiber.yield

    socket = TCPSocket.new("127.0.0.1", address.port)
    socket.read_timeout = 2.seconds
    started = Time.monotonic
    socket.gets.should be_nil # closed by the server, nothing sent
    (Time.monotonic - started).should be < 1.second
    socket.close
    service.shutdown("spec")
  end

  it "main exits 2 with one line when the port is taken" do
    taken = TCPServer.new("127.0.0.1", 0)
    port = taken.local_address.port
    errors = IO::Memory.new
    begin
      CrystalBackend.main([] of String, {"PORT" => port.to_s, "AZ" => "x", "LOG_LEVEL" => "warn"}, errors).should eq(2)
    ensure
      taken.close
      Log.setup(:none) # main set up logging to stdout
    end
    errors.to_s.lines.size.should eq(1)
    errors.to_s.should contain("PORT #{port}")
  end
end
