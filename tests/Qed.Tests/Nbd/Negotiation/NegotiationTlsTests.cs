using System.Collections.Concurrent;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Qed.Nbd.Protocol;
using Qed.Nbd.Server;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Nbd.Negotiation;

/// <summary>
/// STARTTLS and forced TLS (NBD.md 5): nothing before TLS but STARTTLS and ABORT, the upgrade with an SslStream client,
/// client certificates required and refused, and credentials loaded from a qemu-style directory.
/// </summary>
public sealed class NegotiationTlsTests : IClassFixture<NegotiationTlsTests.Certificates>
{
    private readonly TestCertificates certificates;

    public NegotiationTlsTests(Certificates fixture) => certificates = fixture.Value;

    /// <summary>One set of certificates for the class: making them is the slow part.</summary>
    public sealed class Certificates : IDisposable
    {
        internal TestCertificates Value { get; } = TestCertificates.Create();

        public void Dispose() => Value.Dispose();
    }

    [Fact]
    public async Task Before_tls_every_option_but_starttls_and_abort_gets_err_tls_reqd()
    {
        using var dir = new TempDirectory();
        await using var server = Serve(dir, new ConcurrentQueue<string>(), withClientCa: false);
        using var client = RawNbdClient.Start(server.Connect());

        var refused = new List<uint>();
        foreach (uint option in new[] { NbdOption.StructuredReply, NbdOption.List, NbdOption.Info, NbdOption.Go, NbdOption.ListMetaContext, NbdOption.SetMetaContext, NbdOption.ExtendedHeaders, 99u })
        {
            client.SendOption(option, option is NbdOption.Info or NbdOption.Go ? new byte[6] : []);
            Assert.Equal($"Option {option} not permitted before TLS", client.ExpectOnly(option, NbdOptionReply.ErrTlsReqd));
            refused.Add(option);
        }
        Assert.Equal(8, refused.Count);

        client.SendOption(NbdOption.Abort); // nbdkit's way: ABORT is acknowledged even before TLS
        client.ExpectOnly(NbdOption.Abort, NbdOptionReply.Ack);
        client.ExpectClosed();
    }

    [Fact]
    public async Task Export_name_before_tls_drops()
    {
        using var dir = new TempDirectory();
        var diagnostics = new ConcurrentQueue<string>();
        await using var server = Serve(dir, diagnostics, withClientCa: false);
        using var client = RawNbdClient.Start(server.Connect());

        client.SendOption(NbdOption.ExportName);
        client.ExpectClosed();
        await NegotiationFramingTests.AssertReported(diagnostics, "EXPORT_NAME before TLS");
    }

    [Fact]
    public async Task Starttls_upgrades_and_the_handshake_goes_on_encrypted()
    {
        using var dir = new TempDirectory();
        await using var server = Serve(dir, new ConcurrentQueue<string>(), withClientCa: false);
        using var client = RawNbdClient.Start(server.Connect());

        client.SendOption(NbdOption.StartTls, [0]);
        client.ExpectOnly(NbdOption.StartTls, NbdOptionReply.ErrInvalid);
        client.SendOption(NbdOption.StartTls);
        client.ExpectOnly(NbdOption.StartTls, NbdOptionReply.Ack);
        client.UpgradeToTls(certificates.Ca);
        Assert.True(client.IsTls);

        client.SendOption(NbdOption.StartTls);
        Assert.Equal("TLS already negotiated", client.ExpectOnly(NbdOption.StartTls, NbdOptionReply.ErrInvalid));
        client.SendOption(NbdOption.StructuredReply);
        client.ExpectOnly(NbdOption.StructuredReply, NbdOptionReply.Ack);
        client.SendInfo(NbdOption.Info, "", NbdInfo.BlockSize);
        var items = InfoItems.Parse(client.ReadReplies(NbdOption.Info));
        Assert.Equal((ulong)NegotiationImages.Size, items.Size);
        Assert.NotEqual(0, items.Flags & NbdTransmissionFlags.SendDf);
        client.SendOption(NbdOption.Abort);
        client.ExpectOnly(NbdOption.Abort, NbdOptionReply.Ack);
    }

    [Fact]
    public async Task Session_after_starttls_runs_on_the_tls_transport_and_starts_bare()
    {
        // With TLS configured nothing can be negotiated in clear (the STRUCTURED_REPLY below is refused), so the session
        // starts from nothing after STARTTLS, and the transport handed to the transmission phase is the encrypted one.
        using var dir = new TempDirectory();
        var devices = DirectNegotiation.OpenExports(dir.Path, ["disk"], out var exports);
        var options = new NbdServerOptions { TlsCertificate = certificates.Server };
        await using var negotiation = await DirectNegotiation.StartAsync(dir.Path, devices, exports, options);
        var client = negotiation.Client;
        client.ReadGreeting();
        client.SendClientFlags(NbdHandshakeFlags.ClientFixedNewstyle | NbdHandshakeFlags.ClientNoZeroes);
        client.SendOption(NbdOption.StructuredReply);
        client.ExpectOnly(NbdOption.StructuredReply, NbdOptionReply.ErrTlsReqd);
        client.SendOption(NbdOption.StartTls);
        client.ExpectOnly(NbdOption.StartTls, NbdOptionReply.Ack);
        client.UpgradeToTls(certificates.Ca);

        client.SendInfo(NbdOption.Go, "disk");
        var go = InfoItems.Parse(client.ReadReplies(NbdOption.Go));
        var session = await negotiation.SessionAsync();
        Assert.NotNull(session);
        Assert.True(session.Transport.IsTls);
        Assert.False(session.StructuredReplies);
        Assert.Equal(0, go.Flags & NbdTransmissionFlags.SendDf);
    }

    [Fact]
    public async Task Bytes_sent_after_starttls_before_its_ack_drop()
    {
        using var dir = new TempDirectory();
        var diagnostics = new ConcurrentQueue<string>();
        await using var server = Serve(dir, diagnostics, withClientCa: false);
        using var client = RawNbdClient.Start(server.Connect());

        // One write: the server reads STARTTLS and finds a ClientHello-like tail already in its buffer.
        var bytes = new byte[NbdHandshake.OptionHeaderSize + 5];
        NbdHandshake.WriteOptionHeader(bytes, NbdOption.StartTls, 0);
        bytes.AsSpan(NbdHandshake.OptionHeaderSize).Fill(0x16);
        client.Send(bytes);
        client.ExpectClosed();
        await NegotiationFramingTests.AssertReported(diagnostics, "arrived after STARTTLS");
    }

    [Fact]
    public async Task Tls_handshake_that_never_comes_is_dropped_at_the_deadline()
    {
        using var dir = new TempDirectory();
        var diagnostics = new ConcurrentQueue<string>();
        await using var server = NegotiationImages.Serve(dir.Path, diagnostics, configureOptions: o => o with
        {
            TlsCertificate = certificates.Server,
            HandshakeTimeout = TimeSpan.FromMilliseconds(300),
        });
        using var client = StartTls(server);

        client.ExpectClosed(); // the server waits for a ClientHello that never comes
        await NegotiationFramingTests.AssertReported(diagnostics, "handshake not finished");
    }

    [Fact]
    public async Task Client_certificate_from_the_configured_ca_is_required()
    {
        using var dir = new TempDirectory();
        var diagnostics = new ConcurrentQueue<string>();
        await using var server = Serve(dir, diagnostics, withClientCa: true);

        using (var trusted = StartTls(server))
        {
            trusted.UpgradeToTls(certificates.Ca, certificates.Client);
            trusted.SendOption(NbdOption.List);
            Assert.Equal(2, trusted.ReadReplies(NbdOption.List).Count);
        }

        int refused = 0;
        foreach (var clientCertificate in new[] { null, certificates.Stranger })
        {
            using var client = StartTls(server);
            AssertRefused(client, clientCertificate);
            refused++;
        }
        Assert.Equal(2, refused);
        await NegotiationFramingTests.AssertReported(diagnostics, "dropped");
    }

    [Fact]
    public void Credentials_load_from_a_qemu_style_directory()
    {
        using var dir = new TempDirectory();
        string withCa = Path.Combine(dir.Path, "with-ca");
        certificates.WriteServerDirectory(withCa, withCa: true);
        var loaded = NbdTlsCredentials.Load(withCa);
        Assert.True(loaded.ServerCertificate.HasPrivateKey);
        Assert.Equal(certificates.Server.Thumbprint, loaded.ServerCertificate.Thumbprint);
        Assert.NotNull(loaded.ClientCertificateAuthorities);
        Assert.Equal(certificates.Ca.Thumbprint, Assert.Single(loaded.ClientCertificateAuthorities).Thumbprint);
        var options = loaded.ApplyTo(new NbdServerOptions());
        Assert.Same(loaded.ServerCertificate, options.TlsCertificate);

        string withoutCa = Path.Combine(dir.Path, "without-ca");
        certificates.WriteServerDirectory(withoutCa, withCa: false);
        Assert.Null(NbdTlsCredentials.Load(withoutCa).ClientCertificateAuthorities);

        File.Delete(Path.Combine(withoutCa, "server-key.pem"));
        Assert.Contains("server-key.pem' is missing", Assert.ThrowsAny<IOException>(() => NbdTlsCredentials.Load(withoutCa)).Message, StringComparison.Ordinal);
        File.WriteAllText(Path.Combine(withoutCa, "server-key.pem"), "not a key");
        Assert.Contains("server-key.pem' holds no PEM private key", Assert.ThrowsAny<IOException>(() => NbdTlsCredentials.Load(withoutCa)).Message, StringComparison.Ordinal);
        Assert.Contains("does not exist", Assert.ThrowsAny<IOException>(() => NbdTlsCredentials.Load(Path.Combine(dir.Path, "nowhere"))).Message, StringComparison.Ordinal);
    }

    private RawNbdClient StartTls(NbdTestServer server)
    {
        var client = RawNbdClient.Start(server.Connect());
        client.SendOption(NbdOption.StartTls);
        client.ExpectOnly(NbdOption.StartTls, NbdOptionReply.Ack);
        return client;
    }

    /// <summary>
    /// The server refuses the client's certificate (or its absence). With TLS 1.3 the client may finish its side of the
    /// handshake before the server judges its certificate; then the refusal shows on the first read.
    /// </summary>
    private void AssertRefused(RawNbdClient client, X509Certificate2? clientCertificate)
    {
        try
        {
            client.UpgradeToTls(certificates.Ca, clientCertificate);
            client.SendOption(NbdOption.List);
            client.ExpectClosed();
        }
        catch (Exception e) when (e is AuthenticationException or IOException)
        {
            // refused during the handshake
        }
    }

    private NbdTestServer Serve(TempDirectory dir, ConcurrentQueue<string> diagnostics, bool withClientCa) =>
        NegotiationImages.Serve(dir.Path, diagnostics, configureOptions: o => o with
        {
            TlsCertificate = certificates.Server,
            TlsClientCertificateAuthorities = withClientCa ? [certificates.Ca] : null,
        });
}
