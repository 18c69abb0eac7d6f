module CrystalBackend
  # JSON writing shared by `JsonLogFormat` and `AccessLogger`.
  #
  # Hand-written because it runs once per request: JSON::Builder escapes
  # strings char by char and Time#to_rfc3339 goes through Time::Format, which
  # together cost more than serving the request (see bench/crystal_bench.py).
  # Strings that are printable ASCII without quote or backslash (nearly all)
  # are copied as is; anything else takes the stdlib JSON escaping.
  module JsonLine
    extend self

    TIMESTAMP_SIZE = 24

    # 2006-01-02T15:04:05.000Z, assembled on the stack and written once.
    def write_timestamp(time : Time, io : IO) : Nil
      buffer = uninitialized UInt8[TIMESTAMP_SIZE]
      fill_timestamp(time, buffer.to_unsafe)
      io.write(buffer.to_slice)
    end

    # Writes *time* (UTC) as 2006-01-02T15:04:05.000Z to *ptr*[0, 24].
    def fill_timestamp(time : Time, ptr : Pointer(UInt8)) : Nil
      year, month, day = time.date
      put_digits(ptr, 0, year, 4)
      ptr[4] = '-'.ord.to_u8
      put_digits(ptr, 5, month, 2)
      ptr[7] = '-'.ord.to_u8
      put_digits(ptr, 8, day, 2)
      ptr[10] = 'T'.ord.to_u8
      put_digits(ptr, 11, time.hour, 2)
      ptr[13] = ':'.ord.to_u8
      put_digits(ptr, 14, time.minute, 2)
      ptr[16] = ':'.ord.to_u8
      put_digits(ptr, 17, time.second, 2)
      ptr[19] = '.'.ord.to_u8
      put_digits(ptr, 20, time.millisecond, 3)
      ptr[23] = 'Z'.ord.to_u8
    end

    # Writes *value* as exactly *width* zero-padded decimal digits at *ptr + at*.
    def put_digits(ptr : Pointer(UInt8), at : Int32, value : Int32, width : Int32) : Nil
      (width - 1).downto(0) do |i|
        ptr[at + i] = 48_u8 + (value % 10)
        value //= 10
      end
    end

    # Durations are logged rounded to 3 decimals; print those without the
    # general float-to-string algorithm. Other floats take Float#to_s.
    def write_float(value : Float64, io : IO) : Nil
      unless value.finite?
        io << "null"
        return
      end
      thousandths = (value * 1000).round
      unless 0 <= value < 1_000_000 && thousandths / 1000 == value
        io << value
        return
      end
      write_thousandths(thousandths.to_i64, io)
    end

    # A span in milliseconds rounded to the microsecond, e.g. `0.021`.
    def write_milliseconds(span : Time::Span, io : IO) : Nil
      micros = (span.to_i * 1_000_000_000_i64 + span.nanoseconds + 500) // 1000
      write_thousandths(Math.max(micros, 0_i64), io)
    end

    # Writes *value* / 1000 with exactly three decimals; *value* >= 0.
    private def write_thousandths(value : Int64, io : IO) : Nil
      io << value // 1000
      buffer = uninitialized UInt8[4]
      ptr = buffer.to_unsafe
      ptr[0] = '.'.ord.to_u8
      put_digits(ptr, 1, (value % 1000).to_i32, 3)
      io.write(buffer.to_slice)
    end

    def write_string(value : String, io : IO) : Nil
      write_string(value, value.bytesize, io)
    end

    # Writes the first *bytesize* bytes of *value* as a JSON string, without
    # allocating unless they need escaping.
    def write_string(value : String, bytesize : Int32, io : IO) : Nil
      bytes = value.to_slice[0, bytesize]
      if plain?(bytes)
        io.write_byte('"'.ord.to_u8)
        io.write(bytes)
        io.write_byte('"'.ord.to_u8)
      elsif bytesize == value.bytesize
        value.to_json(io)
      else
        String.new(bytes).to_json(io)
      end
    end

    private def plain?(bytes : Bytes) : Bool
      bytes.all? { |byte| 0x20 <= byte < 0x7f && byte != 0x22 && byte != 0x5c }
    end
  end

  # One JSON object per line, easy to query in CloudWatch Logs Insights.
  # Metadata keys (method, path, ...) become top-level fields.
  struct JsonLogFormat
    include ::Log::Formatter

    def initialize
    end

    def format(entry : ::Log::Entry, io : IO) : Nil
      io << %({"ts":")
      JsonLine.write_timestamp(entry.timestamp.to_utc, io)
      io << %(","level":")
      io << entry.severity.label
      io << %(","source":)
      JsonLine.write_string(entry.source, io)
      io << %(,"msg":)
      JsonLine.write_string(entry.message, io)
      entry.data.each do |key, value|
        io << ','
        JsonLine.write_string(key.to_s, io)
        io << ':'
        write_value(value, io)
      end
      if ex = entry.exception
        io << %(,"error":)
        JsonLine.write_string("#{ex.class}: #{ex.message}", io)
      end
      io << '}'
    end

    private def write_value(value : ::Log::Metadata::Value, io : IO) : Nil
      case raw = value.raw
      when String
        JsonLine.write_string(raw, io)
      when Int32, Int64, Bool
        io << raw
      when Float64
        JsonLine.write_float(raw, io)
      when Float32
        raw.finite? ? (io << raw) : (io << "null")
      when Nil
        io << "null"
      else
        JSON.build(io) { |json| value.to_json(json) }
      end
    end
  end

  # Log backend for a line per request. `Log::IOBackend` with its default
  # async dispatcher costs a channel hand-off, a fiber switch and a write(2)
  # per line (~40% of a request's CPU in the benchmark). This one formats
  # in place into a memory buffer and writes batches: when the buffer is
  # large, on warnings and errors, every `flush_interval`, and at exit
  # (Log closes backends in an at_exit handler).
  #
  # Uses the direct dispatcher: correct for the default single-threaded
  # runtime (no -Dpreview_mt); fibers can only interleave inside `flush`'s
  # write, which is why there are two buffers.
  class BufferedLogBackend < ::Log::Backend
    FLUSH_INTERVAL = 100.milliseconds
    FLUSH_BYTES    = 32 * 1024
    MAX_PENDING    = 4 * 1024 * 1024 # lines beyond this are dropped while output is blocked

    getter dropped = 0_u64

    def initialize(@io : IO, @formatter : ::Log::Formatter = JsonLogFormat.new,
                   @flush_interval : Time::Span = FLUSH_INTERVAL)
      super(::Log::DispatchMode::Direct)
      @buffer = IO::Memory.new(FLUSH_BYTES * 2)
      @spare = IO::Memory.new(FLUSH_BYTES * 2)
      @flushing = false
      @closed = false
      spawn(name: "log flusher") { flush_periodically }
    end

    def write(entry : ::Log::Entry) : Nil
      append { |io| @formatter.format(entry, io) }
      flush if entry.severity >= ::Log::Severity::Warn
    end

    # Adds one line: the block writes it (without newline) into the buffer.
    # `AccessLogger` writes its lines here directly, skipping `Log::Entry`.
    def append(& : IO::Memory ->) : Nil
      if @buffer.bytesize >= MAX_PENDING
        @dropped += 1
        return
      end
      yield @buffer
      @buffer << '\n'
      flush if @buffer.bytesize >= FLUSH_BYTES
    end

    def flush : Nil
      return if @flushing || @buffer.empty?
      @flushing = true
      full = @buffer
      @buffer, @spare = @spare, full # lines logged while we write go to the other buffer
      begin
        @io.write(full.to_slice)
        @io.flush
      rescue IO::Error
        # stdout is gone; nothing useful left to do with these lines
      ensure
        full.clear
        @flushing = false
      end
    end

    def close : Nil
      @closed = true
      flush
      flush # lines that arrived during the first write
      super
    end

    private def flush_periodically : Nil
      until @closed
        sleep @flush_interval
        flush
      end
    end
  end

  # The access log: one line per request at info level on the `access` source,
  # configured like any other source by `Log.setup` (level from LOG_LEVEL).
  #
  # `Log#info &.emit(...)` allocates a `Log::Entry` and a `Log::Metadata` per
  # request and stamps it with `Time.local`. When the source's backend is a
  # `BufferedLogBackend` (the production setup), this writes the same JSON
  # line as `JsonLogFormat` straight into the backend's buffer instead. Any
  # other backend (e.g. `Log.capture` in specs) gets a regular entry.
  class AccessLogger
    SEVERITY = ::Log::Severity::Info
    MESSAGE  = "request"

    getter log : ::Log

    def initialize(@log : ::Log = ::Log.for("access"))
      @timestamp = Bytes.new(JsonLine::TIMESTAMP_SIZE)
      @timestamp_second = Int64::MIN
      @line_head = String.build do |io|
        io << %(","level":") << SEVERITY.label << %(","source":)
        JsonLine.write_string(@log.source, io)
        io << %(,"msg":)
        JsonLine.write_string(MESSAGE, io)
        io << %(,"method":)
      end
    end

    def enabled? : Bool
      @log.level <= SEVERITY && !@log.backend.nil?
    end

    # Logs a request. Only the first *path_bytesize* bytes of *path* are the
    # path (callers can pass the request target and cut off its query).
    def log(method : String, path : String, path_bytesize : Int32, status : Int32,
            duration : Time::Span) : Nil
      return unless @log.level <= SEVERITY
      case backend = @log.backend
      when BufferedLogBackend
        backend.append { |io| write_line(io, method, path, path_bytesize, status, duration) }
      when ::Log::Backend
        path = path.byte_slice(0, path_bytesize) unless path_bytesize == path.bytesize
        @log.info &.emit(MESSAGE, method: method, path: path, status: status,
          duration_ms: duration.total_milliseconds.round(3))
      end
    end

    private def write_line(io, method, path, path_bytesize, status, duration) : Nil
      io << %({"ts":")
      write_timestamp(io)
      io << @line_head
      JsonLine.write_string(method, io)
      io << %(,"path":)
      JsonLine.write_string(path, path_bytesize, io)
      io << %(,"status":) << status << %(,"duration_ms":)
      JsonLine.write_milliseconds(duration, io)
      io << '}'
    end

    # Same text as `JsonLine.write_timestamp(Time.utc, io)`; the date and
    # time of day are only worked out again when the second changes.
    private def write_timestamp(io) : Nil
      now = Time.utc
      second = now.to_unix
      timestamp = @timestamp
      if second == @timestamp_second
        JsonLine.put_digits(timestamp.to_unsafe, 20, now.millisecond, 3)
      else
        JsonLine.fill_timestamp(now, timestamp.to_unsafe)
        @timestamp_second = second
      end
      io.write(timestamp)
    end
  end

  def self.setup_logging(level : ::Log::Severity, io : IO = STDOUT) : Nil
    ::Log.setup("*", level, BufferedLogBackend.new(io))
  end
end
