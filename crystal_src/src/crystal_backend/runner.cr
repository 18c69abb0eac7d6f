module CrystalBackend
  Log = ::Log.for("crystal_backend")

  # TCPServer that puts read/write timeouts on every accepted connection, so
  # idle keep-alive and stalled half-sent requests cannot pin a fiber forever.
  class TimeoutTCPServer < TCPServer
    property client_read_timeout : Time::Span = Config::CLIENT_IDLE_TIMEOUT
    property client_write_timeout : Time::Span = Config::CLIENT_WRITE_TIMEOUT

    def accept? : TCPSocket?
      socket = super
      if socket
        socket.read_timeout = client_read_timeout
        socket.write_timeout = client_write_timeout
      end
      socket
    end
  end

  # HTTP::Server whose connection fibers never die with an unhandled exception.
  # Crystal 1.6 raises ArgumentError from the request parser for a bad
  # Content-Length (negative or > UInt64) instead of answering 400; the
  # connection is already closed by then, so log it briefly and move on
  # instead of printing a stack trace per malicious request.
  class Server < HTTP::Server
    private def handle_client(io : IO)
      super
    rescue ex
      Log.debug { "dropped connection after #{ex.class}: #{ex.message}" }
    end
  end

  # A running service: HTTP server, handler and signal-driven shutdown.
  class Service
    getter app : App
    getter server : Server

    def initialize(@config : Config, az : String)
      @app = App.new(az)
      @server = Server.new(@app)
      @server.max_request_line_size = Config::MAX_REQUEST_LINE_SIZE
      @server.max_headers_size = Config::MAX_HEADERS_SIZE
    end

    def bind : Socket::IPAddress
      socket = TimeoutTCPServer.new(@config.host, @config.port)
      @server.bind(socket)
      socket.local_address
    end

    # SIGTERM (ECS stop) and SIGINT start a graceful shutdown.
    def trap_signals : Nil
      {Signal::TERM, Signal::INT}.each do |signal|
        signal.trap { shutdown(signal) }
      end
    end

    # Closing the server stops accepting and makes every connection end after
    # its current request; `listen` then returns. Handlers still running are
    # awaited in `run` (HTTP::Server#close does not wait for them).
    def shutdown(reason) : Nil
      return if @app.draining?
      Log.info &.emit("shutting down", reason: reason.to_s, in_flight: @app.in_flight)
      @app.start_draining
      @server.close unless @server.closed?
    end

    # Blocks until shut down and drained.
    def run : Nil
      @server.listen
      if @app.wait_until_drained(Config::SHUTDOWN_TIMEOUT)
        Log.info { "stopped" }
      else
        Log.warn &.emit("stopped with requests still running", in_flight: @app.in_flight)
      end
    end
  end

  def self.main(argv = ARGV, env = ENV, stderr : IO = STDERR) : Int32
    config = Config.from_env(env)
    return health_check(config.port) if argv.includes?("--health-check")

    setup_logging(config.log_level)
    az = AvailabilityZone.resolve(config)
    service = Service.new(config, az)
    address = service.bind
    service.trap_signals
    Log.info &.emit("listening", address: address.to_s, az: az, commit: CODE_HASH, crystal: Crystal::VERSION)
    service.run
    0
  rescue ex : ArgumentError
    stderr.puts "configuration error: #{ex.message}"
    2
  end

  # For the container HEALTHCHECK (the image has no shell or curl):
  # 0 when the local server answers /health with 200, 1 otherwise.
  def self.health_check(port : Int32, timeout : Time::Span = Config::HEALTH_CHECK_TIMEOUT) : Int32
    client = HTTP::Client.new("127.0.0.1", port)
    client.connect_timeout = timeout
    client.read_timeout = timeout
    client.get("/health").status_code == 200 ? 0 : 1
  rescue
    1
  ensure
    client.try &.close
  end
end
