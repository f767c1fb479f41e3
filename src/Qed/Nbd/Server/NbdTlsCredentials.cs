using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Qed.Nbd.Server;

/// <summary>
/// X.509 credentials for an NBD server, loaded from a directory laid out as QEMU's <c>tls-creds-x509</c> (and nbdkit's
/// <c>--tls-certificates</c>): <c>server-cert.pem</c> and <c>server-key.pem</c>, and optionally <c>ca-cert.pem</c>, whose
/// presence makes client certificates required and trusted only when that CA issued them.
/// </summary>
public sealed class NbdTlsCredentials
{
    private const string ServerCertificateFile = "server-cert.pem";
    private const string ServerKeyFile = "server-key.pem";
    private const string CaCertificateFile = "ca-cert.pem";
    private const string RsaOid = "1.2.840.113549.1.1.1";
    private const string EcOid = "1.2.840.10045.2.1";

    private NbdTlsCredentials(X509Certificate2 serverCertificate, X509Certificate2Collection? clientCertificateAuthorities)
    {
        ServerCertificate = serverCertificate;
        ClientCertificateAuthorities = clientCertificateAuthorities;
    }

    /// <summary>The server's certificate with its private key (the first certificate of <c>server-cert.pem</c>).</summary>
    public X509Certificate2 ServerCertificate { get; }

    /// <summary>The certificates of <c>ca-cert.pem</c>, which client certificates must chain to; null when the directory has none (no client certificate asked for).</summary>
    public X509Certificate2Collection? ClientCertificateAuthorities { get; }

    /// <summary>Loads the credentials in <paramref name="directory"/>.</summary>
    /// <exception cref="FileNotFoundException">A required file is missing (the message names it).</exception>
    /// <exception cref="IOException">A file cannot be read or holds no usable certificate or key, or the key does not match the certificate; one line naming the file.</exception>
    public static NbdTlsCredentials Load(string directory)
    {
        ArgumentNullException.ThrowIfNull(directory);
        if (!Directory.Exists(directory))
        {
            throw new DirectoryNotFoundException($"TLS credentials directory '{directory}' does not exist");
        }

        string certificatePath = Path.Combine(directory, ServerCertificateFile);
        string keyPath = Path.Combine(directory, ServerKeyFile);
        string caPath = Path.Combine(directory, CaCertificateFile);
        string certificateText = ReadRequired(certificatePath);
        string keyText = ReadRequired(keyPath);

        X509Certificate2 publicPart;
        try
        {
            publicPart = X509Certificate2.CreateFromPem(certificateText);
        }
        catch (CryptographicException e)
        {
            throw new IOException($"TLS credentials: '{certificatePath}' holds no valid PEM certificate ({OneLine(e)})", e);
        }

        X509Certificate2 certificate;
        using (publicPart)
        {
            certificate = WithPrivateKey(publicPart, keyText, certificatePath, keyPath);
        }

        // SChannel cannot use a key that lives only in memory; OpenSSL (Linux) can, so only Windows needs the round trip.
        if (OperatingSystem.IsWindows())
        {
            using var ephemeral = certificate;
            certificate = X509CertificateLoader.LoadPkcs12(ephemeral.Export(X509ContentType.Pkcs12), null);
        }

        X509Certificate2Collection? authorities = null;
        if (File.Exists(caPath))
        {
            authorities = new X509Certificate2Collection();
            try
            {
                authorities.ImportFromPem(ReadRequired(caPath));
            }
            catch (CryptographicException e)
            {
                throw new IOException($"TLS credentials: '{caPath}' holds no valid PEM certificate ({OneLine(e)})", e);
            }
            if (authorities.Count == 0)
            {
                throw new IOException($"TLS credentials: '{caPath}' holds no PEM certificate");
            }
        }
        return new NbdTlsCredentials(certificate, authorities);
    }

    /// <summary><paramref name="options"/> with these credentials: TLS required, and client certificates too when a CA was given.</summary>
    public NbdServerOptions ApplyTo(NbdServerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return options with { TlsCertificate = ServerCertificate, TlsClientCertificateAuthorities = ClientCertificateAuthorities };
    }

    private static X509Certificate2 WithPrivateKey(X509Certificate2 certificate, string keyText, string certificatePath, string keyPath)
    {
        if (!keyText.Contains("PRIVATE KEY-----", StringComparison.Ordinal))
        {
            throw new IOException($"TLS credentials: '{keyPath}' holds no PEM private key");
        }
        if (keyText.Contains("-----BEGIN ENCRYPTED PRIVATE KEY-----", StringComparison.Ordinal))
        {
            throw new IOException($"TLS credentials: '{keyPath}' holds an encrypted private key; an unencrypted one is needed");
        }

        try
        {
            switch (certificate.PublicKey.Oid.Value)
            {
                case RsaOid:
                {
                    using var rsa = RSA.Create();
                    rsa.ImportFromPem(keyText);
                    return Matched(() => certificate.CopyWithPrivateKey(rsa), certificatePath, keyPath);
                }
                case EcOid:
                {
                    using var ecdsa = ECDsa.Create();
                    ecdsa.ImportFromPem(keyText);
                    return Matched(() => certificate.CopyWithPrivateKey(ecdsa), certificatePath, keyPath);
                }
                default:
                    // Other key types (DSA, Ed25519): let the platform try the pair as a whole.
                    return Matched(() => X509Certificate2.CreateFromPem(certificate.ExportCertificatePem(), keyText), certificatePath, keyPath);
            }
        }
        catch (Exception e) when (e is ArgumentException or CryptographicException)
        {
            throw new IOException($"TLS credentials: '{keyPath}' holds no usable private key ({OneLine(e)})", e);
        }
    }

    private static X509Certificate2 Matched(Func<X509Certificate2> pair, string certificatePath, string keyPath)
    {
        try
        {
            return pair();
        }
        catch (Exception e) when (e is ArgumentException or CryptographicException)
        {
            throw new IOException($"TLS credentials: the private key in '{keyPath}' does not match the certificate in '{certificatePath}'", e);
        }
    }

    private static string ReadRequired(string path)
    {
        try
        {
            return File.ReadAllText(path);
        }
        catch (FileNotFoundException e)
        {
            throw new FileNotFoundException($"TLS credentials: '{path}' is missing", path, e);
        }
        catch (UnauthorizedAccessException e)
        {
            throw new IOException($"TLS credentials: '{path}' cannot be read: {OneLine(e)}", e);
        }
    }

    private static string OneLine(Exception e) => e.Message.ReplaceLineEndings(" ").Trim();
}
