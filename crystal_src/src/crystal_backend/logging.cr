module CrystalBackend
  # One JSON object per line, easy to query in CloudWatch Logs Insights.
  # Metadata keys (method, path, ...) become top-level fields.
  #
  # Hand-written because it runs once per request: JSON::Builder escapes
  # strings char by char and Time#to_rfc3339 goes through Time::Format, which
  # together cost more than serving the request (see bench/crystal_bench.py).
  # Strings that are printable ASCII without quote or backslash (nearly all)
  # are copied as is; anything else takes the stdlib JSON escaping.
  struct JsonLogFormat
    include ::Log::Formatter

    def initialize
    end

    def format(entry : ::Log::Entry, io : IO) : Nil
      io << %({"ts":")
      write_timestamp(entry.timestamp.to_utc, io)
      io << %(","level":")
      io << entry.severity.label
      io << %(","source":)
      write_string(entry.source, io)
      io << %(,"msg":)
      write_string(entry.message, io)
      entry.data.each do |key, value|
        io << ','
        write_string(key.to_s, io)
        io << ':'
        write_value(value, io)
      end
      if ex = entry.exception
        io << %(,"error":)
        write_string("#{ex.class}: #{ex.message}", io)
      end
      io << '}'
    end

    # 2006-01-02T15:04:05.000Z, assembled on the stack and written once.
    private def write_timestamp(time : Time, io : IO) : Nil
      buffer = uninitialized UInt8[24]
      ptr = buffer.to_unsafe
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
      io.write(buffer.to_slice)
    end

    # Writes *value* as exactly *width* zero-padded decimal digits at *ptr + at*.
    private def put_digits(ptr : Pointer(UInt8), at : Int32, value : Int32, width : Int32) : Nil
      (width - 1).downto(0) do |i|
        ptr[at + i] = 48_u8 + (value % 10)
        value //= 10
      end
    end

    # Durations are logged rounded to 3 decimals; print those without the
    # general float-to-string algorithm. Other floats take Float#to_s.
    private def write_float(value : Float64, io : IO) : Nil
      unless value.finite?
        io << "null"
        return
      end
      thousandths = (value * 1000).round
      unless 0 <= value < 1_000_000 && thousandths / 1000 == value
        io << value
        return
      end
      scaled = thousandths.to_i32
      integer = scaled // 1000
      digits = 1
      rest = integer
      while rest >= 10
        rest //= 10
        digits += 1
      end
      buffer = uninitialized UInt8[12] # at most 6 + 1 + 3 bytes
      ptr = buffer.to_unsafe
      put_digits(ptr, 0, integer, digits)
      ptr[digits] = '.'.ord.to_u8
      put_digits(ptr, digits + 1, scaled % 1000, 3)
      io.write(buffer.to_slice[0, digits + 4])
    end

    private def write_string(value : String, io : IO) : Nil
      if plain?(value)
        io << '"' << value << '"'
      else
        value.to_json(io)
      end
    end

    private def plain?(value : String) : Bool
      value.to_slice.all? { |byte| 0x20 <= byte < 0x7f && byte != 0x22 && byte != 0x5c }
    end

    private def write_value(value : ::Log::Metadata::Value, io : IO) : Nil
      case raw = value.raw
      when String
        write_string(raw, io)
      when Int32, Int64, Bool
        io << raw
      when Float64
        write_float(raw, io)
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
      if @buffer.bytesize >= MAX_PENDING
        @dropped += 1
        return
      end
      @formatter.format(entry, @buffer)
      @buffer << '\n'
      flush if @buffer.bytesize >= FLUSH_BYTES || entry.severity >= ::Log::Severity::Warn
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

  def self.setup_logging(level : ::Log::Severity, io : IO = STDOUT) : Nil
    ::Log.setup("*", level, BufferedLogBackend.new(io))
  end
end
