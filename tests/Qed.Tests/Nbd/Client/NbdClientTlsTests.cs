using Qed.Image;
using Qed.Nbd.Client;
using Qed.Tests.Infrastructure;
using Qed.Tests.Nbd.Negotiation;

namespace Qed.Tests.Nbd.Client;

/// <summary>
/// <c>nbds://</c> URIs: STARTTLS and a TLS handshake with certificates made in the test, against our server and
/// qemu-nbd (<c>--tls-creds</c>); the peer's certificate is checked against the directory's CA and the host name.
/// </summary>
public sealed class NbdClientTlsTests
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(30);

    private static string MakeImage(TempDirectory dir)
    {
        string image = dir.File("disk.qed");
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qed", image, "4M");
        Tools.QemuIo(dir.Path, "qed", image, "write -P 0x7e 1M 64k");
        return image;
    }

    private static async Task ReadsThroughTls(string uri)
    {
        await using var client = await NbdClient.ConnectAsync(uri, CancellationToken.None).WaitAsync(s_timeout);
        var buffer = new byte[65536];
        await client.ReadAsync(buffer, 1 << 20).AsTask().WaitAsync(s_timeout);
        Assert.All(buffer, b => Assert.Equal(0x7e, b));
    }

    [Fact]
    public async Task Our_server_over_tls_with_and_without_client_certificates()
    {
        using var certificates = TestCertificates.Create();
        using var dir = new TempDirectory();
        string image = MakeImage(dir);
        string trusting = dir.File("client");
        certificates.WriteClientDirectory(trusting, withClientCertificate: true);
        string anonymous = dir.File("anonymous");
        certificates.WriteClientDirectory(anonymous, withClientCertificate: false);
        string stranger = dir.File("stranger");
        Directory.CreateDirectory(stranger);
        File.WriteAllText(Path.Combine(stranger, "ca-cert.pem"), certificates.StrangerCa.ExportCertificatePem());

        await using (var server = NbdTestServer.Start(dir.Path, image, "", readOnly: false, configureOptions: o => o with { TlsCertificate = certificates.Server }))
        {
            string socket = server.SocketPath;
            await ReadsThroughTls($"nbds+unix:///?socket={socket}&tls-certificates={trusting}");
            await ReadsThroughTls($"nbds+unix:///?socket={socket}&tls-certificates={anonymous}");
            await ReadsThroughTls($"nbds+unix:///?socket={socket}&tls-certificates={stranger}&tls-verify-peer=false");

            await using (var device = await DiskImage.OpenAsync($"nbds+unix:///?socket={socket}&tls-certificates={anonymous}"))
            {
                await device.WriteAsync(Enumerable.Repeat((byte)0x3c, 4096).ToArray(), 0);
                await device.FlushAsync();
            }

            var plain = await Assert.ThrowsAsync<NbdException>(() => NbdClient.ConnectAsync($"nbd+unix:///?socket={socket}", CancellationToken.None).WaitAsync(s_timeout));
            Assert.Contains("the server requires TLS (use an nbds:// URI)", plain.Message, StringComparison.Ordinal);
            var untrusted = await Assert.ThrowsAsync<NbdException>(() => NbdClient.ConnectAsync($"nbds+unix:///?socket={socket}&tls-certificates={stranger}", CancellationToken.None).WaitAsync(s_timeout));
            Assert.Contains("TLS handshake failed: the server's certificate is not signed by a trusted CA", untrusted.Message, StringComparison.Ordinal);
            var misnamed = await Assert.ThrowsAsync<NbdException>(() => NbdClient.ConnectAsync($"nbds+unix:///?socket={socket}&tls-certificates={trusting}&tls-hostname=elsewhere.example", CancellationToken.None).WaitAsync(s_timeout));
            Assert.Contains("the server's certificate is not for 'elsewhere.example'", misnamed.Message, StringComparison.Ordinal);
            var missing = await Assert.ThrowsAsync<NbdException>(() => NbdClient.ConnectAsync($"nbds+unix:///?socket={socket}&tls-certificates={dir.File("nowhere")}", CancellationToken.None).WaitAsync(s_timeout));
            Assert.Contains("cannot load the TLS certificates", missing.Message, StringComparison.Ordinal);
        }

        await using (var server = NbdTestServer.Start(dir.Path, image, "", readOnly: true, configureOptions: o => o with
        {
            TlsCertificate = certificates.Server,
            TlsClientCertificateAuthorities = [certificates.Ca],
        }))
        {
            await ReadsThroughTls($"nbds+unix:///?socket={server.SocketPath}&tls-certificates={trusting}");
            var buffer = new byte[4096];
            await using var client = await NbdClient.ConnectAsync($"nbds+unix:///?socket={server.SocketPath}&tls-certificates={trusting}", CancellationToken.None).WaitAsync(s_timeout);
            await client.ReadAsync(buffer, 0).AsTask().WaitAsync(s_timeout);
            Assert.All(buffer, b => Assert.Equal(0x3c, b));
            // Without a client certificate the server refuses the handshake (or drops the connection right after it).
            await Assert.ThrowsAsync<NbdException>(() => ReadsThroughTls($"nbds+unix:///?socket={server.SocketPath}&tls-certificates={anonymous}"));
        }
    }

    [Fact]
    public async Task Qemu_nbd_over_tls_and_the_cli()
    {
        using var certificates = TestCertificates.Create();
        using var dir = new TempDirectory();
        string image = MakeImage(dir);
        string serverDirectory = dir.File("server");
        certificates.WriteServerDirectory(serverDirectory, withCa: true);
        string clientDirectory = dir.File("client");
        certificates.WriteClientDirectory(clientDirectory, withClientCertificate: false);

        using var server = QemuNbdServer.Start(dir.Path, image, "-f", "qed", "-r",
            "--object", $"tls-creds-x509,id=tls0,endpoint=server,dir={serverDirectory},verify-peer=off", "--tls-creds", "tls0");
        string uri = $"nbds+unix:///?socket={server.SocketPath}&tls-certificates={clientDirectory}";
        await ReadsThroughTls(uri);

        var info = QedProcess.Run(dir.Path, s_timeout, "info", "--output=json", uri);
        Assert.True(info.ExitCode == 0, info.ToString());
        Assert.Contains("\"virtual-size\": 4194304", info.StdOut, StringComparison.Ordinal);
        var io = QedProcess.Run(dir.Path, s_timeout, "io", "-r", "-c", "read -P 0x7e 1M 64k", uri);
        Assert.True(io.ExitCode == 0 && !io.StdOut.Contains("failed", StringComparison.Ordinal), io.ToString());
        var plain = QedProcess.Run(dir.Path, s_timeout, "info", $"nbd+unix:///?socket={server.SocketPath}");
        Assert.Equal(1, plain.ExitCode);
        Assert.Contains("requires TLS", plain.StdErr, StringComparison.Ordinal);
    }
}
