using System.Net.Security;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Qed.Nbd.Transport;

namespace Qed.Nbd.Server;

/// <summary>The TLS handshake after a STARTTLS ACK (NBD.md 5.3): an <see cref="SslStream"/> over the connection's socket.</summary>
internal static class NegotiationTls
{
    // Building the certificate context walks the chain: once per certificate, not once per client.
    private static readonly ConditionalWeakTable<X509Certificate2, SslStreamCertificateContext> s_contexts = new();

    /// <summary>
    /// Runs the server side of the TLS handshake on <paramref name="socket"/> and returns the encrypted transport. The
    /// new transport owns the socket; a failed handshake throws (the caller drops the client).
    /// </summary>
    public static async ValueTask<NbdTransport> UpgradeAsync(Socket socket, NbdServerOptions options, CancellationToken cancellationToken)
    {
        var certificate = options.TlsCertificate ?? throw new InvalidOperationException("TLS is not configured");
        var authorities = options.TlsClientCertificateAuthorities;
        var authentication = new SslServerAuthenticationOptions
        {
            ServerCertificateContext = s_contexts.GetValue(certificate, static c => SslStreamCertificateContext.Create(c, additionalCertificates: null, offline: true)),
            EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
            ClientCertificateRequired = authorities is not null,
            CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
        };
        if (authorities is not null)
        {
            // Client certificates count only when issued by the configured CAs, never by the system's trust store
            // (qemu's verify-peer against ca-cert.pem). A private CA publishes no revocation lists.
            var policy = new X509ChainPolicy
            {
                TrustMode = X509ChainTrustMode.CustomRootTrust,
                RevocationMode = X509RevocationMode.NoCheck,
            };
            policy.CustomTrustStore.AddRange(authorities);
            authentication.CertificateChainPolicy = policy;
            authentication.RemoteCertificateValidationCallback = static (_, certificate, _, errors) => certificate is not null && errors == SslPolicyErrors.None;
        }
        else
        {
            authentication.RemoteCertificateValidationCallback = static (_, _, _, _) => true; // nobody asked for one
        }

        var ssl = new SslStream(new NetworkStream(socket, ownsSocket: true), leaveInnerStreamOpen: false);
        try
        {
            await ssl.AuthenticateAsServerAsync(authentication, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await ssl.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        return new StreamTransport(ssl);
    }
}
