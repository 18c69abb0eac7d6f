require "./spec_helper"

describe CrystalBackend::Config do
  it "has defaults" do
    config = CrystalBackend::Config.from_env({} of String => String)
    config.host.should eq("0.0.0.0")
    config.port.should eq(3000)
    config.log_level.should eq(Log::Severity::Info)
    config.az_env.should be_nil
    config.metadata_uri.should be_nil
  end

  it "reads PORT, LOG_LEVEL, AZ and the metadata URI" do
    config = CrystalBackend::Config.from_env({
      "PORT"                          => "8080",
      "LOG_LEVEL"                     => "debug",
      "AZ"                            => " eu-west-1b ",
      "ECS_CONTAINER_METADATA_URI_V4" => "http://169.254.170.2/v4/abc",
    })
    config.port.should eq(8080)
    config.log_level.should eq(Log::Severity::Debug)
    config.az_env.should eq("eu-west-1b")
    config.metadata_uri.should eq("http://169.254.170.2/v4/abc")
  end

  it "treats blank values as unset" do
    config = CrystalBackend::Config.from_env({"PORT" => "", "AZ" => "  ", "LOG_LEVEL" => ""})
    config.port.should eq(3000)
    config.az_env.should be_nil
    config.log_level.should eq(Log::Severity::Info)
  end

  {"abc", "0", "70000", "-1", "80x"}.each do |bad|
    it "rejects PORT=#{bad}" do
      expect_raises(ArgumentError, /PORT/) { CrystalBackend::Config.from_env({"PORT" => bad}) }
    end
  end

  it "rejects an unknown LOG_LEVEL" do
    expect_raises(ArgumentError, /LOG_LEVEL/) { CrystalBackend::Config.from_env({"LOG_LEVEL" => "loud"}) }
  end

  it "main exits 2 on bad configuration" do
    errors = IO::Memory.new
    CrystalBackend.main([] of String, {"PORT" => "nope"}, errors).should eq(2)
    errors.to_s.should contain("PORT")
  end

  it "health check exits 1 when nothing listens" do
    CrystalBackend.health_check(free_port, 500.milliseconds).should eq(1)
  end

  it "health check exits 0 on 200 and 1 on other statuses" do
    with_server(CrystalBackend::App.new("x")) do |port|
      CrystalBackend.health_check(port).should eq(0)
    end
    with_server(HTTP::Handler::HandlerProc.new { |ctx| ctx.response.status = :service_unavailable }) do |port|
      CrystalBackend.health_check(port).should eq(1)
    end
  end
end
