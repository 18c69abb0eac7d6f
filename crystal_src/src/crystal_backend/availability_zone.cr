module CrystalBackend
  # Finds the message shown by the service: the task's Availability Zone.
  #
  # Order: ECS task metadata endpoint v4, then the `AZ` env variable, then
  # `"unknown"`. A metadata endpoint that is down, slow or answers junk never
  # blocks start-up for longer than `Config::METADATA_DEADLINE`.
  module AvailabilityZone
    Log = ::Log.for("crystal_backend.az")

    MAX_AZ_SIZE = 128

    def self.resolve(config : Config) : String
      if uri = config.metadata_uri
        if az = fetch_with_deadline(uri)
          return az
        end
      end
      config.az_env || Config::DEFAULT_AZ
    end

    # Runs `fetch` in its own fiber and gives up after *deadline* even if the
    # server keeps the connection alive by dribbling bytes.
    def self.fetch_with_deadline(metadata_uri : String,
                                 timeout : Time::Span = Config::METADATA_TIMEOUT,
                                 deadline : Time::Span = Config::METADATA_DEADLINE) : String?
      result = Channel(String?).new(1) # buffered: an abandoned fetch never blocks
      spawn { result.send(fetch(metadata_uri, timeout)) }
      select
      when az = result.receive
        az
      when timeout(deadline)
        Log.warn { "task metadata lookup exceeded #{deadline.total_seconds}s, ignoring it" }
        nil
      end
    end

    # GETs `<metadata_uri>/task` and returns its "AvailabilityZone", or nil on
    # any failure (the failure is logged at warn level).
    def self.fetch(metadata_uri : String, timeout : Time::Span = Config::METADATA_TIMEOUT) : String?
      uri = URI.parse(metadata_uri.rstrip('/') + "/task")
      unless uri.scheme == "http" && uri.host.presence
        Log.warn { "ignoring task metadata URI #{metadata_uri.inspect}: expected http://host/..." }
        return nil
      end

      client = HTTP::Client.new(uri)
      client.connect_timeout = timeout
      client.read_timeout = timeout
      client.get(uri.request_target) do |response|
        unless response.status.success?
          Log.warn { "task metadata answered HTTP #{response.status_code}" }
          return nil
        end
        body = read_bounded(response.body_io)
        return parse_task(body) if body
        Log.warn { "task metadata body larger than #{Config::METADATA_MAX_BODY} bytes" }
        nil
      end
    rescue ex
      Log.warn { "task metadata lookup failed: #{ex.class}: #{ex.message}" }
      nil
    ensure
      client.try &.close
    end

    # Extracts the Availability Zone from a task metadata v4 `/task` document.
    # Returns nil for non-JSON, non-object, missing, non-string or blank values.
    def self.parse_task(body : String) : String?
      json = JSON.parse(body)
      az = json.as_h?.try(&.["AvailabilityZone"]?).try(&.as_s?).try(&.strip)
      if az.nil? || az.empty? || az.bytesize > MAX_AZ_SIZE
        Log.warn { "task metadata has no usable AvailabilityZone" }
        return nil
      end
      az
    rescue ex : JSON::ParseException
      Log.warn { "task metadata is not JSON: #{ex.message}" }
      nil
    end

    private def self.read_bounded(io : IO) : String?
      buffer = IO::Memory.new
      IO.copy(io, buffer, Config::METADATA_MAX_BODY)
      return nil if io.read_byte # more than the limit
      buffer.to_s
    end
  end
end
