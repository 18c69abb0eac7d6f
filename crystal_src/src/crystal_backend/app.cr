module CrystalBackend
  # The HTTP handler: routing, the three endpoints, error answers and the
  # access log. Response bodies that never change are built once.
  class App
    include HTTP::Handler

    ALLOW      = "GET, HEAD"
    TEXT_PLAIN = "text/plain; charset=utf-8"
    JSON_TYPE  = "application/json"

    getter az : String
    getter code_hash : String
    # One line per request at info level; `LOG_LEVEL=warn` and above silence it.
    getter access_log : ::Log
    # Requests whose handler is currently running (the server is single-threaded).
    getter in_flight = 0

    def initialize(@az : String, @code_hash : String = CODE_HASH,
                   @access_log : ::Log = ::Log.for("access"))
      @hello_prefix = "Crystal backend: Hello! from #{@az} commit #{@code_hash} at "
      @api_body = JSON.build do |json|
        json.object do
          json.field "from", "Crystal backend"
          json.field "message", @az
          json.field "commit", @code_hash
        end
      end
      @draining = false
    end

    def call(context : HTTP::Server::Context) : Nil
      started = Time.monotonic
      path = request_path(context.request)
      @in_flight += 1
      begin
        # While draining, tell keep-alive clients to go elsewhere for the next request.
        context.response.headers["Connection"] = "close" if @draining
        if path
          route(context, path)
        else
          bad_request(context)
        end
      ensure
        @in_flight -= 1
        log_access(context, path || without_query(context.request.resource), started)
      end
    end

    def draining? : Bool
      @draining
    end

    # Stop inviting keep-alive reuse; the caller closes the listener.
    def start_draining : Nil
      @draining = true
    end

    # Waits until no handler runs, but at least *grace* so requests that were
    # already in socket buffers when draining started get read and answered.
    # Returns false if handlers were still running at *timeout*.
    def wait_until_drained(timeout : Time::Span, grace : Time::Span = Config::SHUTDOWN_GRACE) : Bool
      start = Time.monotonic
      loop do
        elapsed = Time.monotonic - start
        return true if @in_flight == 0 && elapsed >= grace
        return false if elapsed >= timeout
        sleep 5.milliseconds
      end
    end

    private def route(context, path : String) : Nil
      case path
      when "/crystal", "/crystal/"         then get_only(context) { hello(context) }
      when "/crystal/api", "/crystal/api/" then get_only(context) { api(context) }
      when "/health"                       then get_only(context) { health(context) }
      else                                      not_found(context)
      end
    end

    # The request path without the query, or nil for a target that is not a
    # URI. For the usual origin-form target ("/crystal?x=1") this avoids
    # HTTP::Request#path, which parses a URI object per request; other forms
    # (absolute URI) still go through it, and that parser raises on some
    # targets (`http://x:99999999999/`: OverflowError; `http://x:1a/`:
    # URI::Error), which would otherwise answer 500 with no access log line.
    def request_path(request : HTTP::Request) : String?
      resource = request.resource
      return without_query(resource) if resource.starts_with?('/')
      request.path
    rescue # anything the URI parser raises: the client sent a bad target
      nil
    end

    private def without_query(resource : String) : String
      query = resource.byte_index('?'.ord)
      query ? resource.byte_slice(0, query) : resource
    end

    private def get_only(context, &) : Nil
      case context.request.method
      when "GET", "HEAD" then yield
      else                    method_not_allowed(context)
      end
    end

    # Written in two pieces: no per-request string for the body.
    private def hello(context) : Nil
      now_ms = Time.utc.to_unix_ms
      response = context.response
      response.content_type = TEXT_PLAIN
      response.content_length = @hello_prefix.bytesize + decimal_digits(now_ms)
      response << @hello_prefix << now_ms unless context.request.method == "HEAD"
    end

    private def decimal_digits(value : Int64) : Int32
      digits = 1
      while value >= 10
        value //= 10
        digits += 1
      end
      digits
    end

    private def api(context) : Nil
      respond(context, JSON_TYPE, @api_body)
    end

    private def health(context) : Nil
      respond(context, TEXT_PLAIN, "OK\n")
    end

    private def bad_request(context) : Nil
      respond(context, TEXT_PLAIN, "Bad Request\n", :bad_request)
    end

    private def not_found(context) : Nil
      respond(context, TEXT_PLAIN, "Not Found\n", :not_found)
    end

    private def method_not_allowed(context) : Nil
      context.response.headers["Allow"] = ALLOW
      respond(context, TEXT_PLAIN, "Method Not Allowed\n", :method_not_allowed)
    end

    # Sets status, type and length; sends the body unless this is a HEAD request.
    # Request bodies are never read: the server closes the connection after the
    # response if any declared body bytes are left unread.
    private def respond(context, content_type : String, body : String,
                        status : HTTP::Status = HTTP::Status::OK) : Nil
      response = context.response
      response.status = status
      response.content_type = content_type
      response.content_length = body.bytesize
      response << body unless context.request.method == "HEAD"
    end

    private def log_access(context, path : String, started : Time::Span) : Nil
      @access_log.info &.emit("request",
        method: context.request.method,
        path: path,
        status: context.response.status_code,
        duration_ms: (Time.monotonic - started).total_milliseconds.round(3))
    end
  end
end
