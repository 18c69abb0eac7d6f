module CrystalBackend
  # One JSON object per line, easy to query in CloudWatch Logs Insights.
  # Metadata keys (method, path, ...) become top-level fields.
  struct JsonLogFormat
    include ::Log::Formatter

    def initialize
    end

    def format(entry : ::Log::Entry, io : IO) : Nil
      JSON.build(io) do |json|
        json.object do
          json.field "ts", entry.timestamp.to_rfc3339(fraction_digits: 3)
          json.field "level", entry.severity.label
          json.field "source", entry.source
          json.field "msg", entry.message
          entry.data.each { |key, value| json.field key.to_s, value }
          if ex = entry.exception
            json.field "error", "#{ex.class}: #{ex.message}"
          end
        end
      end
    end
  end

  def self.setup_logging(level : ::Log::Severity, io : IO = STDOUT) : Nil
    backend = ::Log::IOBackend.new(io, formatter: JsonLogFormat.new)
    ::Log.setup("*", level, backend)
  end
end
