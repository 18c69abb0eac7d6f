module CrystalBackend
  # Runtime configuration. Every setting and its default lives here; nothing
  # else in the service reads ENV.
  struct Config
    DEFAULT_HOST          = "0.0.0.0"
    DEFAULT_PORT          = 3000
    DEFAULT_LOG_LEVEL     = ::Log::Severity::Info
    DEFAULT_AZ            = "unknown"
    METADATA_TIMEOUT      = 1.5.seconds # connect and per-read timeout
    METADATA_DEADLINE     = 3.seconds   # whole lookup, incl. slow dribbling servers
    METADATA_MAX_BODY     = 64 * 1024
    MAX_REQUEST_LINE_SIZE = 8 * 1024
    MAX_HEADERS_SIZE      = 16 * 1024
    CLIENT_IDLE_TIMEOUT   = 75.seconds # > ALB/Envoy idle timeout (60 s), avoids 502 races
    CLIENT_WRITE_TIMEOUT  = 10.seconds
    SHUTDOWN_GRACE        = 500.milliseconds
    SHUTDOWN_TIMEOUT      = 3.seconds
    HEALTH_CHECK_TIMEOUT  = 2.seconds
    LOG_QUEUE_SIZE        = 2048     # lines waiting for stdout; more are dropped and counted
    LOG_CLOSE_TIMEOUT     = 1.second # at exit, for queued lines; stdout may be stuck
    ACCEPT_RETRY_DELAY    = 10.milliseconds
    ACCEPT_ERROR_INTERVAL = 1.second # at most one "accept failed" line per interval

    getter host : String
    getter port : Int32
    getter log_level : ::Log::Severity
    # `AZ` env variable, used when the ECS metadata endpoint gives no answer.
    getter az_env : String?
    # `ECS_CONTAINER_METADATA_URI_V4`, set by the ECS agent on Fargate.
    getter metadata_uri : String?

    def initialize(@host = DEFAULT_HOST, @port = DEFAULT_PORT, @log_level = DEFAULT_LOG_LEVEL,
                   @az_env = nil, @metadata_uri = nil)
    end

    # Builds the config from *env* (anything with `#[]?(String)`, e.g. `ENV` or
    # a `Hash(String, String)`). Raises `ArgumentError` on invalid values so a
    # misconfigured task fails loudly instead of running with surprises.
    def self.from_env(env = ENV) : Config
      new(
        port: parse_port(env["PORT"]?),
        log_level: parse_log_level(env["LOG_LEVEL"]?),
        az_env: env["AZ"]?.try(&.strip.presence),
        metadata_uri: env["ECS_CONTAINER_METADATA_URI_V4"]?.try(&.strip.presence),
      )
    end

    def self.parse_port(value : String?) : Int32
      value = value.try(&.strip.presence)
      return DEFAULT_PORT unless value
      port = value.to_i?
      raise ArgumentError.new("PORT must be an integer in 1..65535, got #{value.inspect}") unless port && 0 < port <= 65535
      port
    end

    def self.parse_log_level(value : String?) : ::Log::Severity
      value = value.try(&.strip.presence)
      return DEFAULT_LOG_LEVEL unless value
      ::Log::Severity.parse?(value) ||
        raise ArgumentError.new("LOG_LEVEL must be one of #{::Log::Severity.names.join(", ")}, got #{value.inspect}")
    end
  end
end
