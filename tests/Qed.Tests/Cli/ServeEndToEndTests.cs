using System.Buffers.Binary;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using System.Text.RegularExpressions;
using Qed.Image;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Cli;

/// <summary>
/// The real <c>qed serve</c> process with real clients: nbdinfo sees the name and description of <c>-x</c>/<c>-D</c>,
/// qemu-io reads and writes through it and the data is on disk after SIGTERM, <c>-r</c> refuses writes, <c>-e 2</c>
/// lets two clients in and keeps a third waiting, <c>--tls-creds</c> serves nbdinfo and nbdcopy (both ways) over TLS
/// and refuses clients in clear.
/// </summary>
public sealed partial class ServeEndToEndTests : IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);
    private readonly TempDirectory _dir = new();
    private readonly string _image;

    public ServeEndToEndTests()
    {
        _image = _dir.File("disk.qed");
        QedImage.Create(_image, new QedCreateOptions { Size = 8 << 20 });
    }

    public void Dispose() => _dir.Dispose();

    private string SocketPath => _dir.File("s.sock");

    private string Uri(string name = "") => $"nbd+unix:///{name}?socket={SocketPath}";

    [Fact]
    public void Nbdinfo_lists_the_export_name_and_description()
    {
        using var server = ServeProcess.Start(_dir.Path, "-t", "-x", "disk", "-D", "the test disk", "-k", SocketPath, _image);
        var list = Tools.Run("nbdinfo", ["--list", "--json", Uri()], _dir.Path, Timeout);
        Assert.True(list.ExitCode == 0, list.ToString());
        using var json = JsonDocument.Parse(list.StdOut);
        var export = Assert.Single(json.RootElement.GetProperty("exports").EnumerateArray().ToArray());
        Assert.Equal("disk", export.GetProperty("export-name").GetString());
        Assert.Equal("the test disk", export.GetProperty("description").GetString());
        Assert.Equal(8 << 20, export.GetProperty("export-size").GetInt64());
        StopCleanly(server);
    }

    [Fact]
    public void Qemu_io_writes_through_the_server_and_the_data_is_on_disk_after_SIGTERM()
    {
        using (var server = ServeProcess.Start(_dir.Path, "-t", "-f", "qed", "-k", SocketPath, _image))
        {
            QemuIoNbd("write -P 0x5a 64k 192k", "write -P 0x33 5M 4k", "flush");
            var read = QemuIoNbd("read -P 0x5a 64k 192k", "read -P 0x33 5M 4k", "read -P 0 0 64k");
            Assert.DoesNotContain("fail", read.StdOut, StringComparison.OrdinalIgnoreCase);
            // Written but not flushed when the signal comes: the shutdown flushes it.
            QemuIoNbd("write -P 0x77 7M 64k");
            StopCleanly(server);
        }
        var onDisk = Tools.QemuIo(_dir.Path, "qed", _image, "read -P 0x5a 64k 192k", "read -P 0x33 5M 4k", "read -P 0x77 7M 64k", "read -P 0 0 64k");
        Assert.DoesNotContain("fail", onDisk.StdOut, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public void Read_only_refuses_writes()
    {
        Tools.QemuIo(_dir.Path, "qed", _image, "write -P 0x11 0 64k");
        string before = Tools.Sha256OfFile(_image);
        using var server = ServeProcess.Start(_dir.Path, "-t", "-r", "-k", SocketPath, _image);
        // Advertised read-only: clients refuse to write (the server's EPERM on the wire is the transmission tests' part).
        var info = Tools.Run("nbdinfo", ["--json", Uri()], _dir.Path, Timeout);
        using (var json = JsonDocument.Parse(info.StdOut))
        {
            Assert.True(json.RootElement.GetProperty("exports")[0].GetProperty("is_read_only").GetBoolean());
        }
        var write = Tools.Run("qemu-io", ["-f", "raw", "-c", "write -P 0x22 0 4k", Uri()], _dir.Path, Timeout);
        Assert.NotEqual(0, write.ExitCode);
        Assert.Contains("Permission denied", write.StdErr, StringComparison.Ordinal);
        var read = Tools.Run("qemu-io", ["-r", "-f", "raw", "-c", "read -P 0x11 0 64k", Uri()], _dir.Path, Timeout);
        Assert.True(read.ExitCode == 0 && !read.StdOut.Contains("fail", StringComparison.OrdinalIgnoreCase), read.ToString());
        StopCleanly(server);
        Assert.Equal(before, Tools.Sha256OfFile(_image));
    }

    [Fact]
    public void Shared_two_serves_two_clients_and_keeps_a_third_waiting()
    {
        using var server = ServeProcess.Start(_dir.Path, "-t", "-e", "2", "-k", SocketPath, _image);
        using var first = ServeProcess.ConnectUnix(SocketPath);
        using var second = ServeProcess.ConnectUnix(SocketPath);
        Assert.Equal("NBDMAGIC", Greeting(first));
        Assert.Equal("NBDMAGIC", Greeting(second));

        using var third = ServeProcess.ConnectUnix(SocketPath); // sits in the listen backlog
        third.ReceiveTimeout = 500;
        var buffer = new byte[18];
        var waited = Assert.Throws<SocketException>(() => third.Receive(buffer));
        Assert.Equal(SocketError.TimedOut, waited.SocketErrorCode);

        first.Dispose(); // a slot frees: the third gets its greeting
        third.ReceiveTimeout = 10_000;
        Assert.Equal("NBDMAGIC", Greeting(third));
        StopCleanly(server);
    }

    [Fact]
    public void Tls_creds_serve_nbdinfo_and_nbdcopy_over_TLS_and_refuse_clear_text()
    {
        string serverDirectory = _dir.File("server-creds");
        string clientDirectory = _dir.File("client-creds");
        MakeCredentials(serverDirectory, clientDirectory);
        using var server = ServeProcess.Start(_dir.Path, "-t", "-e", "8", "-v", "-b", "127.0.0.1", "-p", "0", "--tls-creds", serverDirectory, _image);
        var match = server.WaitForStderr(ListeningLine(), TimeSpan.FromSeconds(10));
        string port = match.Groups[1].Value;

        var secure = Tools.Run("nbdinfo", ["--json", $"nbds://127.0.0.1:{port}/?tls-certificates={clientDirectory}"], _dir.Path, Timeout);
        Assert.True(secure.ExitCode == 0, secure.ToString());
        using (var json = JsonDocument.Parse(secure.StdOut))
        {
            Assert.True(json.RootElement.GetProperty("TLS").GetBoolean());
            Assert.Equal(8 << 20, json.RootElement.GetProperty("exports")[0].GetProperty("export-size").GetInt64());
        }
        var clear = Tools.Run("nbdinfo", [$"nbd://127.0.0.1:{port}/"], _dir.Path, Timeout);
        Assert.NotEqual(0, clear.ExitCode);

        // nbdcopy both ways over TLS: a random raw file into the export (flushed), the export back out, compared.
        string uri = $"nbds://127.0.0.1:{port}/?tls-certificates={clientDirectory}";
        string source = _dir.File("source.raw");
        string copy = _dir.File("copy.raw");
        var bytes = new byte[8 << 20];
        int seed = TestSeed.For(nameof(Tls_creds_serve_nbdinfo_and_nbdcopy_over_TLS_and_refuse_clear_text));
        new Random(seed).NextBytes(bytes.AsSpan(0, 3 << 20)); // the rest stays zero: a hole for the sparse paths
        File.WriteAllBytes(source, bytes);
        var upload = Tools.Run("nbdcopy", ["--flush", source, uri], _dir.Path, Timeout);
        Assert.True(upload.ExitCode == 0, upload.ToString());
        var download = Tools.Run("nbdcopy", [uri, copy], _dir.Path, Timeout);
        Assert.True(download.ExitCode == 0, download.ToString());
        Assert.Equal(Tools.Sha256OfFile(source), Tools.Sha256OfFile(copy));
        StopCleanly(server);
        Assert.Equal(Tools.Sha256OfFile(source), Tools.QemuFlattenDigest(_dir.Path, _image));
    }

    /// <summary>The 8-byte NBDMAGIC that opens the server's greeting (the test reads the whole 18-byte greeting).</summary>
    private static string Greeting(Socket client)
    {
        var greeting = new byte[18];
        int total = 0;
        while (total < greeting.Length)
        {
            int read = client.Receive(greeting, total, greeting.Length - total, SocketFlags.None);
            Assert.True(read > 0, "the server closed before its greeting");
            total += read;
        }
        Assert.Equal(0x49484156454F5054UL, BinaryPrimitives.ReadUInt64BigEndian(greeting.AsSpan(8))); // IHAVEOPT
        return System.Text.Encoding.ASCII.GetString(greeting, 0, 8);
    }

    private ToolResult QemuIoNbd(params string[] commands)
    {
        var arguments = new List<string> { "-f", "raw" };
        foreach (string command in commands)
        {
            arguments.Add("-c");
            arguments.Add(command);
        }
        arguments.Add(Uri());
        var result = Tools.Run("qemu-io", arguments, _dir.Path, Timeout);
        Assert.True(result.ExitCode == 0 && !result.StdOut.Contains("failed", StringComparison.Ordinal), result.ToString());
        return result;
    }

    /// <summary>SIGTERM, exit 0, files removed, image clean with its need-check bit clear.</summary>
    private void StopCleanly(ServeProcess server)
    {
        server.Signal(ServeProcess.SigTerm);
        Assert.Equal(0, server.WaitForExit(Timeout));
        Assert.False(File.Exists(SocketPath));
        Assert.False(File.Exists(server.PidFile!));
        var check = Tools.QemuImgRaw(_dir.Path, "check", "-f", "qed", _image);
        Assert.True(check.ExitCode == 0, check.ToString());
        Span<byte> features = stackalloc byte[8];
        using var stream = File.OpenRead(_image);
        stream.Position = 16;
        stream.ReadExactly(features);
        Assert.Equal(0UL, BinaryPrimitives.ReadUInt64LittleEndian(features) & 0x2);
    }

    /// <summary>A CA, a server certificate for 127.0.0.1/localhost in <paramref name="serverDirectory"/>, and the CA alone in <paramref name="clientDirectory"/> (what libnbd's tls-certificates needs).</summary>
    private static void MakeCredentials(string serverDirectory, string clientDirectory)
    {
        Directory.CreateDirectory(serverDirectory);
        Directory.CreateDirectory(clientDirectory);
        using var caKey = RSA.Create(2048);
        var caRequest = new CertificateRequest("CN=qed serve test CA", caKey, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        caRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        caRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        using var ca = caRequest.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));

        using var key = RSA.Create(2048);
        var request = new CertificateRequest("CN=localhost", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        var names = new SubjectAlternativeNameBuilder();
        names.AddDnsName("localhost");
        names.AddIpAddress(System.Net.IPAddress.Loopback);
        request.CertificateExtensions.Add(names.Build());
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.KeyEncipherment, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        using var certificate = request.Create(ca, DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(29), [5, 6, 7, 8]);

        File.WriteAllText(Path.Combine(serverDirectory, "server-cert.pem"), certificate.ExportCertificatePem());
        File.WriteAllText(Path.Combine(serverDirectory, "server-key.pem"), key.ExportPkcs8PrivateKeyPem());
        File.WriteAllText(Path.Combine(clientDirectory, "ca-cert.pem"), ca.ExportCertificatePem());
    }

    [GeneratedRegex(@"^qed: serving '.*' on .*:(\d+)( with TLS)?$", RegexOptions.Multiline)]
    private static partial Regex ListeningLine();
}
