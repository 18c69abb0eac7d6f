module CrystalBackend
  Log = ::Log.for("crystal_backend")

  # A running service: the listening socket, one fiber per connection, the
  # HTTP handler (`App`) and signal-driven shutdown.
  #
  # Why not `HTTP::Server#listen`: a request with a bad `Content-Length`
  # (negative, not a number, beyond UInt64, or several that disagree) makes
  # the stdlib request parser raise ArgumentError (`HTTP.content_length`, same
  # in Crystal 1.6 and 1.14) instead of returning 400. The parser runs before
  # any `HTTP::Handler`, inside a fiber that `HTTP::Server` spawns in its
  # private `handle_client`, and HTTP::Server has no public hook around it, so
  # every such request would end its fiber with "Unhandled exception" and a
  # stack trace on stderr. The accept loop here does what `HTTP::Server#listen`
  # does, with public API only: `Socket::Server#accept?` (nil once closed) and
  # `HTTP::Server::RequestProcessor`, the documented class HTTP::Server hands
  # each connection to (`#process(input, output)`, `#close`,
  # `max_request_line_size=`, `max_headers_size=`; identical in 1.6 and 1.14,
  # see crystal-lang.org/api/1.6.0/HTTP/Server/RequestProcessor.html).
  class Service
    getter app : App
    @listener : TCPServer? = nil

    def initialize(@config : Config, az : String, *,
                   @idle_timeout : Time::Span = Config::CLIENT_IDLE_TIMEOUT,
                   @write_timeout : Time::Span = Config::CLIENT_WRITE_TIMEOUT)
      @app = App.new(az)
      @processor = HTTP::Server::RequestProcessor.new(@app)
      @processor.max_request_line_size = Config::MAX_REQUEST_LINE_SIZE
      @processor.max_headers_size = Config::MAX_HEADERS_SIZE
      @accept_errors = LogThrottle.new(Config::ACCEPT_ERROR_INTERVAL)
    end

    def bind : Socket::IPAddress
      listener = TCPServer.new(@config.host, @config.port)
      @listener = listener
      listener.local_address
    end

    # SIGTERM (ECS stop) and SIGINT start a graceful shutdown.
    def trap_signals : Nil
      {Signal::TERM, Signal::INT}.each do |signal|
        signal.trap { shutdown(signal) }
      end
    end

    # Stops accepting and makes every connection end after its current
    # request (what `HTTP::Server#close` does); `run` then waits for handlers
    # that are still running.
    def shutdown(reason) : Nil
      return if @app.draining?
      Log.info &.emit("shutting down", reason: reason.to_s, in_flight: @app.in_flight)
      @app.start_draining
      @processor.close
      @listener.try &.close
    end

    # Serves until shut down, then waits until drained.
    def run : Nil
      listener = @listener || raise "call bind before run"
      while socket = accept(listener)
        spawn serve(socket)
      end
      report_accept_errors(@accept_errors.take_suppressed)
      if @app.wait_until_drained(Config::SHUTDOWN_TIMEOUT)
        Log.info { "stopped" }
      else
        Log.warn &.emit("stopped with requests still running", in_flight: @app.in_flight)
      end
    end

    # The next connection, or nil once the listener is closed. Errors such as
    # running out of file descriptors are retried every ACCEPT_RETRY_DELAY
    # and logged at most once per ACCEPT_ERROR_INTERVAL, with the number of
    # failures not logged since the previous line (`suppressed`). The count
    # left when accept works again goes out with the next accept at least an
    # interval later, or at shutdown.
    private def accept(listener : TCPServer) : TCPSocket?
      loop do
        socket = listener.accept?
        report_accept_errors(@accept_errors.summary?) if @accept_errors.suppressed > 0
        return socket
      rescue ex
        return nil if listener.closed?
        if suppressed = @accept_errors.allow?
          Log.error(exception: ex, &.emit("accept failed", suppressed: suppressed))
        end
        sleep Config::ACCEPT_RETRY_DELAY
      end
    end

    private def report_accept_errors(suppressed : Int64?) : Nil
      return unless suppressed && suppressed > 0
      Log.warn &.emit("accept failures not logged", suppressed: suppressed)
    end

    # One connection, as `HTTP::Server` serves it: buffered writes (flushed
    # after each response), keep-alive handled by the processor. Idle and
    # stalled connections time out instead of pinning a fiber forever.
    private def serve(socket : TCPSocket) : Nil
      socket.sync = false
      socket.read_timeout = @idle_timeout
      socket.write_timeout = @write_timeout
      @processor.process(socket, socket)
    rescue ex
      # The request parser's ArgumentError (see above); the client gets the
      # connection closed without an answer, as with HTTP::Server.
      Log.debug { "dropped connection after #{ex.class}: #{ex.message}" }
    ensure
      begin
        socket.close
      rescue IO::Error
      end
    end
  end

  def self.main(argv = ARGV, env = ENV, stderr : IO = STDERR) : Int32
    config = Config.from_env(env)
    return health_check(config.port) if argv.includes?("--health-check")

    setup_logging(config.log_level)
    az = AvailabilityZone.resolve(config)
    service = Service.new(config, az)
    begin
      address = service.bind
    rescue ex : Socket::Error # port in use, or below 1024 without the right to bind it
      stderr.puts "startup error: cannot listen on PORT #{config.port}: #{ex.message}"
      return 2
    end
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
