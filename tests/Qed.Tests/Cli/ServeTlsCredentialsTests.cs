using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Qed.Image;
using Qed.Nbd.Server;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Cli;

/// <summary>
/// <see cref="NbdTlsCredentials"/>: a qemu-style credentials directory made here with .NET's CertificateRequest (no
/// openssl needed) loads into a certificate SslStream can serve with; each broken directory gives one line naming the
/// file, through the library and through <c>qed serve --tls-creds</c>.
/// </summary>
public sealed class ServeTlsCredentialsTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>A CA and a server certificate it issued (SANs localhost and 127.0.0.1), written as qemu's tls-creds-x509 files.</summary>
    private static string MakeDirectory(string directory, bool withCa, bool rsa = false, Func<AsymmetricAlgorithm, string>? keyPem = null)
    {
        Directory.CreateDirectory(directory);
        using var caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var caRequest = new CertificateRequest("CN=qed test CA", caKey, HashAlgorithmName.SHA256);
        caRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        caRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        using var ca = caRequest.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));

        using AsymmetricAlgorithm serverKey = rsa ? RSA.Create(2048) : ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = serverKey is RSA rsaKey
            ? new CertificateRequest("CN=localhost", rsaKey, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1)
            : new CertificateRequest("CN=localhost", (ECDsa)serverKey, HashAlgorithmName.SHA256);
        var names = new SubjectAlternativeNameBuilder();
        names.AddDnsName("localhost");
        names.AddIpAddress(System.Net.IPAddress.Loopback);
        request.CertificateExtensions.Add(names.Build());
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        // Signed by the CA's key whatever the server's key type (an RSA certificate under an ECDSA CA).
        using var server = request.Create(ca.SubjectName, X509SignatureGenerator.CreateForECDsa(caKey),
            DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(29), [1, 2, 3, 4]);

        File.WriteAllText(Path.Combine(directory, "server-cert.pem"), server.ExportCertificatePem());
        File.WriteAllText(Path.Combine(directory, "server-key.pem"), keyPem?.Invoke(serverKey) ?? serverKey.ExportPkcs8PrivateKeyPem());
        if (withCa)
        {
            File.WriteAllText(Path.Combine(directory, "ca-cert.pem"), ca.ExportCertificatePem());
        }
        return directory;
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    public async Task A_directory_loads_and_serves_a_TLS_handshake(bool withCa, bool rsa)
    {
        string directory = MakeDirectory(_dir.File("creds"), withCa, rsa,
            rsa ? key => ((RSA)key).ExportRSAPrivateKeyPem() : null); // RSA in the older "RSA PRIVATE KEY" form, as certtool writes it
        var credentials = NbdTlsCredentials.Load(directory);

        Assert.True(credentials.ServerCertificate.HasPrivateKey);
        Assert.Equal("CN=localhost", credentials.ServerCertificate.Subject);
        if (withCa)
        {
            var authority = Assert.Single(credentials.ClientCertificateAuthorities!);
            Assert.Equal("CN=qed test CA", authority.Subject);
        }
        else
        {
            Assert.Null(credentials.ClientCertificateAuthorities);
        }
        var options = credentials.ApplyTo(new NbdServerOptions { MaxConnections = 3 });
        Assert.Same(credentials.ServerCertificate, options.TlsCertificate);
        Assert.Same(credentials.ClientCertificateAuthorities, options.TlsClientCertificateAuthorities);
        Assert.Equal(3, options.MaxConnections);

        // The loaded key must be usable by SslStream as it is (an in-memory key on Linux/OpenSSL).
        var (serverSocket, clientSocket) = await ConnectedPair();
        await using var serverStream = new SslStream(new NetworkStream(serverSocket, ownsSocket: true));
        await using var clientStream = new SslStream(new NetworkStream(clientSocket, ownsSocket: true), false,
            (_, certificate, _, _) => certificate?.Subject == "CN=localhost");
        var timeout = TimeSpan.FromSeconds(20);
        var serverSide = serverStream.AuthenticateAsServerAsync(new SslServerAuthenticationOptions
        {
            ServerCertificate = credentials.ServerCertificate,
            ClientCertificateRequired = false,
        });
        var clientSide = clientStream.AuthenticateAsClientAsync("localhost");
        await Task.WhenAll(serverSide, clientSide).WaitAsync(timeout);
        await clientStream.WriteAsync("ping"u8.ToArray()).AsTask().WaitAsync(timeout);
        var received = new byte[4];
        await serverStream.ReadExactlyAsync(received).AsTask().WaitAsync(timeout);
        Assert.Equal("ping"u8.ToArray(), received);
    }

    public static TheoryData<string, string> BrokenDirectories => new()
    {
        { "no certificate", "'@/server-cert.pem' is missing" },
        { "no key", "'@/server-key.pem' is missing" },
        { "certificate not PEM", "'@/server-cert.pem' holds no valid PEM certificate" },
        { "key not PEM", "'@/server-key.pem' holds no PEM private key" },
        { "key garbled", "'@/server-key.pem' holds no usable private key" },
        { "key encrypted", "'@/server-key.pem' holds an encrypted private key; an unencrypted one is needed" },
        { "key of another certificate", "the private key in '@/server-key.pem' does not match the certificate in '@/server-cert.pem'" },
        { "CA not PEM", "'@/ca-cert.pem' holds no PEM certificate" },
        { "CA garbled", "'@/ca-cert.pem' holds no valid PEM certificate" },
    };

    [Theory]
    [MemberData(nameof(BrokenDirectories))]
    public void A_broken_directory_is_refused_naming_the_file(string broken, string expected)
    {
        string directory = MakeDirectory(_dir.File("creds"), withCa: true);
        Break(directory, broken);
        expected = "TLS credentials: " + expected.Replace("@", directory, StringComparison.Ordinal);

        var e = Assert.ThrowsAny<IOException>(() => NbdTlsCredentials.Load(directory));
        Assert.StartsWith(expected, e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', e.Message);

        // The command line says the same in one line, and leaves nothing behind.
        string image = _dir.File("disk.qed");
        QedImage.Create(image, new QedCreateOptions { Size = 1 << 20 });
        var result = QedProcess.Run(_dir.Path, TimeSpan.FromSeconds(20), "serve", "--tls-creds=" + directory, "-k", _dir.File("s.sock"), image);
        Assert.Equal(1, result.ExitCode);
        Assert.StartsWith("qed: " + expected, Assert.Single(QedCli.Lines(result.StdErr)), StringComparison.Ordinal);
        Assert.False(File.Exists(_dir.File("s.sock")));
    }

    [Fact]
    public void A_missing_directory_is_refused()
    {
        var e = Assert.ThrowsAny<IOException>(() => NbdTlsCredentials.Load(_dir.File("none")));
        Assert.Equal($"TLS credentials directory '{_dir.File("none")}' does not exist", e.Message);
    }

    private static void Break(string directory, string how)
    {
        string certificate = Path.Combine(directory, "server-cert.pem");
        string key = Path.Combine(directory, "server-key.pem");
        string ca = Path.Combine(directory, "ca-cert.pem");
        const string Garbled = "-----BEGIN {0}-----\nbm90IGEga2V5IGF0IGFsbA==\n-----END {0}-----\n";
        switch (how)
        {
            case "no certificate":
                File.Delete(certificate);
                break;
            case "no key":
                File.Delete(key);
                break;
            case "certificate not PEM":
                File.WriteAllText(certificate, "this is not a certificate\n");
                break;
            case "key not PEM":
                File.WriteAllText(key, "this is not a key\n");
                break;
            case "key garbled":
                File.WriteAllText(key, string.Format(System.Globalization.CultureInfo.InvariantCulture, Garbled, "PRIVATE KEY"));
                break;
            case "key encrypted":
                using (var encrypted = ECDsa.Create(ECCurve.NamedCurves.nistP256))
                {
                    File.WriteAllText(key, encrypted.ExportEncryptedPkcs8PrivateKeyPem("secret",
                        new PbeParameters(PbeEncryptionAlgorithm.Aes128Cbc, HashAlgorithmName.SHA256, 1000)));
                }
                break;
            case "key of another certificate":
                using (var other = ECDsa.Create(ECCurve.NamedCurves.nistP256))
                {
                    File.WriteAllText(key, other.ExportPkcs8PrivateKeyPem());
                }
                break;
            case "CA not PEM":
                File.WriteAllText(ca, "no certificate here\n");
                break;
            case "CA garbled":
                File.WriteAllText(ca, string.Format(System.Globalization.CultureInfo.InvariantCulture, Garbled, "CERTIFICATE"));
                break;
            default:
                throw new ArgumentException($"unknown case {how}", nameof(how));
        }
    }

    private static async Task<(Socket Server, Socket Client)> ConnectedPair()
    {
        using var listener = new Socket(SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
        listener.Listen(1);
        var client = new Socket(SocketType.Stream, ProtocolType.Tcp);
        var accept = listener.AcceptAsync();
        await client.ConnectAsync(listener.LocalEndPoint!);
        return (await accept.WaitAsync(TimeSpan.FromSeconds(10)), client);
    }
}
