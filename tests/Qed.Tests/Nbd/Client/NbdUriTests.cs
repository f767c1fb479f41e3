using System.Net;
using System.Net.Sockets;
using Qed.Nbd.Client;

namespace Qed.Tests.Nbd.Client;

/// <summary>Parsing of <c>nbd://</c>, <c>nbd+tcp://</c> and <c>nbd+unix://</c> URIs, and the one-line refusals of bad ones.</summary>
public sealed class NbdUriTests
{
    public static TheoryData<string, string?, string?, int, string, string> Valid() => new()
    {
        // text, socket, host, port, export, qemu's name
        { "nbd+unix:///?socket=/tmp/s.sock", "/tmp/s.sock", null, 10809, "", "nbd+unix://?socket=/tmp/s.sock" },
        { "nbd+unix:///disk?socket=/run/x.sock", "/run/x.sock", null, 10809, "disk", "nbd+unix:///disk?socket=/run/x.sock" },
        { "nbd+unix://?socket=rel.sock", "rel.sock", null, 10809, "", "nbd+unix://?socket=rel.sock" },
        { "nbd+unix:///a%20b%2Fc?socket=/tmp/my%20sock", "/tmp/my sock", null, 10809, "a b/c", "nbd+unix:///a b/c?socket=/tmp/my sock" },
        { "nbd://localhost", null, "localhost", 10809, "", "nbd://localhost:10809" },
        { "nbd://localhost/", null, "localhost", 10809, "", "nbd://localhost:10809" },
        { "nbd://127.0.0.1:10999/a%20b/c", null, "127.0.0.1", 10999, "a b/c", "nbd://127.0.0.1:10999/a b/c" },
        { "nbd+tcp://example.com:1/x", null, "example.com", 1, "x", "nbd://example.com:1/x" },
        { "nbd://[::1]:10998/d", null, "::1", 10998, "d", "nbd://::1:10998/d" },
        { "nbd://[fe80::1]/", null, "fe80::1", 10809, "", "nbd://fe80::1:10809" },
        { "NBD://host/%C3%A9t%C3%A9", null, "host", 10809, "été", "nbd://host:10809/été" },
        { "nbd://host//leading-slash", null, "host", 10809, "/leading-slash", "nbd://host:10809//leading-slash" },
    };

    [Theory]
    [MemberData(nameof(Valid))]
    public void Parses(string text, string? socket, string? host, int port, string export, string qemuName)
    {
        Assert.True(NbdUri.IsNbdUri(text));
        var uri = NbdUri.Parse(text);
        Assert.Equal(text, uri.Text);
        Assert.Equal(socket, uri.SocketPath);
        Assert.Equal(host, uri.Host);
        Assert.Equal(port, uri.Port);
        Assert.Equal(export, uri.ExportName);
        Assert.Equal(qemuName, uri.QemuName);
        switch (uri.EndPoint)
        {
            case UnixDomainSocketEndPoint unix:
                Assert.Equal(socket, unix.ToString());
                break;
            case IPEndPoint ip:
                Assert.Equal(IPAddress.Parse(host!), ip.Address);
                Assert.Equal(port, ip.Port);
                break;
            case DnsEndPoint dns:
                Assert.Equal(host, dns.Host);
                Assert.Equal(port, dns.Port);
                break;
            default:
                Assert.Fail($"unexpected end point {uri.EndPoint}");
                break;
        }
    }

    public static TheoryData<string, string> Invalid() => new()
    {
        { "nbd://host/x?tls-certificates=/d", "'tls-certificates' needs TLS (nbds://)" },
        { "nbd+unix:///x?socket=/s&tls-hostname=h", "'tls-hostname' needs TLS (nbds://)" },
        { "nbds://host/x?tls-verify-peer=maybe", "tls-verify-peer must be true or false, not 'maybe'" },
        { "nbds://host/x?tls-certificates=", "tls-certificates names no directory" },
        { "nbds://host/x?tls-hostname=a&tls-hostname=b", "the query parameter 'tls-hostname' is given twice" },
        { "nbds+vsock://2/x", "the transport 'vsock' is not supported" },
        { "nbd+vsock://2/x", "the transport 'vsock' is not supported" },
        { "nbd+ssh://host/x", "the transport 'ssh' is not supported" },
        { "nbd+unix:///x", "nbd+unix:// needs ?socket=PATH" },
        { "nbd+unix:///x?socket=", "nbd+unix:// needs ?socket=PATH" },
        { "nbd+unix://host/x?socket=/s", "takes no host" },
        { "nbd+unix:///x?socket=/a&socket=/b", "the socket is given twice" },
        { "nbd+unix:///x?socket=/s&tls=on", "the query parameter 'tls' is not supported" },
        { "nbd://host/x?socket=/s", "with TCP (use nbd+unix://)" },
        { "nbd:///x", "it names no host" },
        { "nbd://:10809/x", "it names no host" },
        { "nbd://host:0/x", "the port '0' is not a number from 1 to 65535" },
        { "nbd://host:65536/x", "the port '65536' is not a number from 1 to 65535" },
        { "nbd://host:99999999999/x", "is not a number from 1 to 65535" },
        { "nbd://host:/x", "the port '' is not a number" },
        { "nbd://host:+1/x", "the port '+1' is not a number" },
        { "nbd://[::1/x", "the IPv6 address has no closing ']'" },
        { "nbd://[1.2.3.4]/x", "is not an IPv6 address" },
        { "nbd://[::1]x/y", "unexpected 'x' after the IPv6 address" },
        { "nbd://user@host/x", "a user name is not supported" },
        { "nbd://host/x#frag", "a fragment (#...) is not allowed" },
        { "nbd://host/a%2", "bad percent-escape in the export name at '%2'" },
        { "nbd://host/a%zz", "bad percent-escape in the export name at '%zz'" },
        { "nbd://host/a%00b", "the export name contains a NUL byte" },
        { "nbd://host/a%ff", "the export name is not UTF-8 once decoded" },
        { "nbd://ho st/x", "is not a host name or address" },
        { "nbd+unix:///x?socket=/a%00b", "the socket path contains a NUL byte" },
        { "nbd://host/" + new string('x', 4097), "the export name is longer than 4096 bytes" },
    };

    [Theory]
    [MemberData(nameof(Invalid))]
    public void Refuses_with_one_clear_line(string text, string reason)
    {
        var e = Assert.ThrowsAny<QedException>(() => NbdUri.Parse(text));
        Assert.StartsWith($"Invalid NBD URI '{text}': ", e.Message, StringComparison.Ordinal);
        Assert.Contains(reason, e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void Nbds_uris_carry_libnbd_tls_parameters()
    {
        var uri = NbdUri.Parse("nbds+unix:///d?socket=/s&tls-certificates=/etc/pki/qed&tls-hostname=server.example");
        Assert.Equal(new NbdClientTls("/etc/pki/qed", VerifyPeer: true, "server.example"), uri.Tls);
        Assert.Equal("nbds+unix:///d?socket=/s", uri.QemuName);
        Assert.Equal(uri.Tls, uri.Options.Tls);
        var tcp = NbdUri.Parse("nbds://host.example:1234/d?tls-verify-peer=false");
        Assert.Equal(new NbdClientTls(null, VerifyPeer: false, null), tcp.Tls);
        Assert.Equal("host.example", tcp.Options.Tls!.HostName); // the certificate must name the host connected to
        Assert.Equal("localhost", NbdUri.Parse("nbds+unix:///?socket=/s").Options.Tls!.HostName);
        Assert.Null(NbdUri.Parse("nbd://host/d").Tls);
        Assert.Null(NbdUri.Parse("nbd://host/d").Options.Tls);
    }

    [Theory]
    [InlineData("disk.qed")]
    [InlineData("/tmp/nbd/x.raw")]
    [InlineData("nbd:unix:/tmp/s")]
    [InlineData("nbd.qed")]
    [InlineData("nbdx://host/x")]
    [InlineData("nbd+://host/x")]
    [InlineData("file:///nbd://x")]
    [InlineData("")]
    public void File_names_are_not_uris(string name) => Assert.False(NbdUri.IsNbdUri(name));
}
