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

    # Crystal 1.6's parser raises here; the connection must just be dropped.
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

  it "puts read and write timeouts on accepted connections" do
    server = CrystalBackend::TimeoutTCPServer.new("127.0.0.1", 0)
    server.client_read_timeout = 123.milliseconds
    client = TCPSocket.new("127.0.0.1", server.local_address.port)
    accepted = server.accept?.not_nil!
    accepted.read_timeout.should eq(123.milliseconds)
    accepted.write_timeout.should eq(CrystalBackend::Config::CLIENT_WRITE_TIMEOUT)
    accepted.close
    client.close
    server.close
  end
end
