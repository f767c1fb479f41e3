using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Qed.Nbd.Server.Tls;

/// <summary>
/// X.509 credentials from a directory laid out as QEMU's <c>tls-creds-x509</c> (and nbdkit's <c>--tls-certificates</c>):
/// <c>server-cert.pem</c> and <c>server-key.pem</c> for the server, and an optional <c>ca-cert.pem</c> whose presence
/// requires clients to show a certificate it issued (qemu's <c>verify-peer</c>).
/// </summary>
internal sealed record NbdTlsCredentials(X509Certificate2 Certificate, X509Certificate2Collection? ClientCertificateAuthorities)
{
    public const string ServerCertificateFile = "server-cert.pem";
    public const string ServerKeyFile = "server-key.pem";
    public const string CaCertificateFile = "ca-cert.pem";

    /// <summary>Loads the credentials in <paramref name="directory"/>.</summary>
    /// <exception cref="QedException">A file is missing or unreadable, or holds no usable certificate or key; the message names it.</exception>
    public static NbdTlsCredentials Load(string directory)
    {
        ArgumentNullException.ThrowIfNull(directory);
        if (!Directory.Exists(directory))
        {
            throw new QedException($"TLS credentials directory '{directory}' does not exist");
        }

        string certificatePath = Path.Combine(directory, ServerCertificateFile);
        string keyPath = Path.Combine(directory, ServerKeyFile);
        string caPath = Path.Combine(directory, CaCertificateFile);
        RequireFile(certificatePath);
        RequireFile(keyPath);
        X509Certificate2 certificate;
        try
        {
            certificate = X509Certificate2.CreateFromPemFile(certificatePath, keyPath);
        }
        catch (Exception e) when (e is CryptographicException or ArgumentException or IOException or UnauthorizedAccessException)
        {
            throw new QedException($"cannot load '{certificatePath}' with key '{keyPath}': {e.Message}", e);
        }

        if (!certificate.HasPrivateKey)
        {
            throw new QedException($"'{keyPath}' holds no private key for '{certificatePath}'");
        }

        X509Certificate2Collection? authorities = null;
        if (File.Exists(caPath))
        {
            authorities = [];
            try
            {
                authorities.ImportFromPemFile(caPath);
            }
            catch (Exception e) when (e is CryptographicException or IOException or UnauthorizedAccessException)
            {
                throw new QedException($"cannot load '{caPath}': {e.Message}", e);
            }

            if (authorities.Count == 0)
            {
                throw new QedException($"'{caPath}' holds no certificate");
            }
        }

        return new NbdTlsCredentials(certificate, authorities);
    }

    /// <summary><paramref name="options"/> with these credentials: TLS required, client certificates when a CA was given.</summary>
    public NbdServerOptions ApplyTo(NbdServerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return options with { TlsCertificate = Certificate, TlsClientCertificateAuthorities = ClientCertificateAuthorities };
    }

    private static void RequireFile(string path)
    {
        if (!File.Exists(path))
        {
            throw new QedException($"TLS credentials file '{path}' does not exist");
        }
    }
}
