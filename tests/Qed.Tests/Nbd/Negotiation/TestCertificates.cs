using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Qed.Tests.Nbd.Negotiation;

/// <summary>
/// A private CA with a server certificate (SANs <c>DNS:localhost</c>, <c>IP:127.0.0.1</c>) and a client certificate,
/// plus a client certificate from a second, untrusted CA; made in the test with .NET alone (no openssl tool), ECDSA P-256.
/// </summary>
internal sealed class TestCertificates : IDisposable
{
    private static readonly DateTimeOffset s_notBefore = DateTimeOffset.UtcNow.AddHours(-1);
    private static readonly DateTimeOffset s_notAfter = DateTimeOffset.UtcNow.AddDays(1);

    private TestCertificates(X509Certificate2 ca, X509Certificate2 server, X509Certificate2 client, X509Certificate2 strangerCa, X509Certificate2 stranger)
    {
        Ca = ca;
        Server = server;
        Client = client;
        StrangerCa = strangerCa;
        Stranger = stranger;
    }

    public X509Certificate2 Ca { get; }

    public X509Certificate2 Server { get; }

    public X509Certificate2 Client { get; }

    /// <summary>A CA the server does not trust.</summary>
    public X509Certificate2 StrangerCa { get; }

    /// <summary>A client certificate issued by <see cref="StrangerCa"/>.</summary>
    public X509Certificate2 Stranger { get; }

    public static TestCertificates Create()
    {
        var ca = CreateCa("CN=qed test CA");
        var strangerCa = CreateCa("CN=someone else's CA");
        var sans = new SubjectAlternativeNameBuilder();
        sans.AddDnsName("localhost");
        sans.AddIpAddress(IPAddress.Loopback);
        var server = Issue(ca, "CN=localhost", "1.3.6.1.5.5.7.3.1", sans.Build()); // serverAuth
        var client = Issue(ca, "CN=qed test client", "1.3.6.1.5.5.7.3.2", null); // clientAuth
        var stranger = Issue(strangerCa, "CN=stranger", "1.3.6.1.5.5.7.3.2", null);
        return new TestCertificates(ca, server, client, strangerCa, stranger);
    }

    /// <summary>
    /// Writes the files QEMU, nbdkit and libnbd read from a credentials directory: <c>ca-cert.pem</c>, and the server's
    /// or the client's certificate and key.
    /// </summary>
    public void WriteServerDirectory(string directory, bool withCa)
    {
        Directory.CreateDirectory(directory);
        if (withCa)
        {
            File.WriteAllText(Path.Combine(directory, "ca-cert.pem"), Ca.ExportCertificatePem());
        }
        WritePair(directory, "server", Server);
    }

    public void WriteClientDirectory(string directory, bool withClientCertificate)
    {
        Directory.CreateDirectory(directory);
        File.WriteAllText(Path.Combine(directory, "ca-cert.pem"), Ca.ExportCertificatePem());
        if (withClientCertificate)
        {
            WritePair(directory, "client", Client);
        }
    }

    public void Dispose()
    {
        Ca.Dispose();
        Server.Dispose();
        Client.Dispose();
        StrangerCa.Dispose();
        Stranger.Dispose();
    }

    private static void WritePair(string directory, string role, X509Certificate2 certificate)
    {
        File.WriteAllText(Path.Combine(directory, $"{role}-cert.pem"), certificate.ExportCertificatePem());
        using var key = certificate.GetECDsaPrivateKey()!;
        File.WriteAllText(Path.Combine(directory, $"{role}-key.pem"), key.ExportPkcs8PrivateKeyPem());
    }

    private static X509Certificate2 CreateCa(string subject)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(subject, key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        return request.CreateSelfSigned(s_notBefore, s_notAfter);
    }

    private static X509Certificate2 Issue(X509Certificate2 ca, string subject, string usage, X509Extension? subjectAlternativeNames)
    {
        var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(subject, key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid(usage)], false));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(ca, true, false));
        if (subjectAlternativeNames is not null)
        {
            request.CertificateExtensions.Add(subjectAlternativeNames);
        }
        var serial = new byte[16];
        RandomNumberGenerator.Fill(serial);
        serial[0] &= 0x7f; // a positive serial number
        using var issued = request.Create(ca, s_notBefore, s_notAfter, serial);
        return issued.CopyWithPrivateKey(key); // the certificate keeps the key alive
    }
}
