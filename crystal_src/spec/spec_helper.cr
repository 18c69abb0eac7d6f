require "spec"
require "log/spec"
require "../src/crystal_backend"

# Runs one request through *handler* in memory and parses the raw response.
def call_handler(handler : HTTP::Handler, method : String, path : String,
                 headers = HTTP::Headers.new) : HTTP::Client::Response
  io = IO::Memory.new
  request = HTTP::Request.new(method, path, headers)
  response = HTTP::Server::Response.new(io)
  handler.call(HTTP::Server::Context.new(request, response))
  response.close
  io.rewind
  HTTP::Client::Response.from_io(io, ignore_body: method == "HEAD")
end

# Serves *handler* on a random loopback port for the duration of the block.
def with_server(handler : HTTP::Handler | HTTP::Handler::HandlerProc, &)
  server = HTTP::Server.new(handler)
  address = server.bind_unused_port("127.0.0.1")
  spawn { server.listen }
  Fiber.yield
  begin
    yield address.port
  ensure
    server.close unless server.closed?
  end
end

def free_port : Int32
  socket = TCPServer.new("127.0.0.1", 0)
  port = socket.local_address.port
  socket.close
  port
end
