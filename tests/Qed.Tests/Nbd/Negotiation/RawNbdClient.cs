using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Qed.Nbd.Protocol;

namespace Qed.Tests.Nbd.Negotiation;

/// <summary>
/// A handshake driven byte by byte with our protocol writers and readers, over a unix socket (and an SslStream after
/// STARTTLS). Every read has a timeout, so a server that stops answering fails the test instead of hanging it.
/// </summary>
internal sealed class RawNbdClient : IDisposable
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(5);

    private readonly Socket socket;
    private Stream stream;

    public RawNbdClient(Socket socket)
    {
        this.socket = socket;
        socket.ReceiveTimeout = (int)Timeout.TotalMilliseconds;
        socket.SendTimeout = (int)Timeout.TotalMilliseconds;
        stream = new NetworkStream(socket, ownsSocket: true);
    }

    /// <summary>A client that has read the greeting and sent <paramref name="clientFlags"/>.</summary>
    public static RawNbdClient Start(Socket socket, uint clientFlags = NbdHandshakeFlags.ClientFixedNewstyle | NbdHandshakeFlags.ClientNoZeroes)
    {
        var client = new RawNbdClient(socket);
        client.ReadGreeting();
        client.SendClientFlags(clientFlags);
        return client;
    }

    public bool IsTls => stream is SslStream;

    /// <summary>Bytes the server sent that were not read yet (clear text only).</summary>
    public int Available => socket.Available;

    public ushort ReadGreeting()
    {
        var greeting = ReadExactly(NbdHandshake.GreetingSize);
        Assert.True(NbdHandshake.TryReadGreeting(greeting, out ushort flags, out string? error), error);
        return flags;
    }

    public void SendClientFlags(uint flags)
    {
        var bytes = new byte[NbdHandshake.ClientFlagsSize];
        NbdHandshake.WriteClientFlags(bytes, flags);
        Send(bytes);
    }

    public void SendOption(uint option, ReadOnlySpan<byte> payload = default)
    {
        var bytes = new byte[NbdHandshake.OptionHeaderSize + payload.Length];
        NbdHandshake.WriteOptionHeader(bytes, option, (uint)payload.Length);
        payload.CopyTo(bytes.AsSpan(NbdHandshake.OptionHeaderSize));
        Send(bytes);
    }

    public void SendInfo(uint option, string name, params ushort[] infos)
    {
        var payload = new byte[NbdHandshake.InfoRequestLength(name, infos.Length)];
        NbdHandshake.WriteInfoRequest(payload, name, infos);
        SendOption(option, payload);
    }

    public void SendMetaContext(uint option, string name, params string[] queries)
    {
        var payload = new byte[NbdHandshake.MetaContextRequestLength(name, queries)];
        NbdHandshake.WriteMetaContextRequest(payload, name, queries);
        SendOption(option, payload);
    }

    public void Send(ReadOnlySpan<byte> bytes)
    {
        stream.Write(bytes);
        stream.Flush();
    }

    public (NbdOptionReplyHeader Header, byte[] Payload) ReadReply()
    {
        var headerBytes = ReadExactly(NbdHandshake.OptionReplyHeaderSize);
        Assert.True(NbdHandshake.TryReadOptionReplyHeader(headerBytes, NbdLimits.DefaultMaxOptionLength, out var header, out string? error), error);
        return (header, ReadExactly((int)header.Length));
    }

    /// <summary>Replies to <paramref name="option"/> up to and including the final one (ACK or an error).</summary>
    public List<(NbdOptionReplyHeader Header, byte[] Payload)> ReadReplies(uint option)
    {
        var replies = new List<(NbdOptionReplyHeader, byte[])>();
        while (true)
        {
            var reply = ReadReply();
            Assert.Equal(option, reply.Header.Option);
            replies.Add(reply);
            if (reply.Header.ReplyType == NbdOptionReply.Ack || NbdOptionReply.IsError(reply.Header.ReplyType))
            {
                return replies;
            }
            Assert.True(replies.Count < 100, "more than 100 replies to one option");
        }
    }

    /// <summary>The single final reply to <paramref name="option"/>, which must be of <paramref name="replyType"/>; returns its message.</summary>
    public string ExpectOnly(uint option, uint replyType)
    {
        var (header, payload) = ReadReply();
        Assert.Equal(option, header.Option);
        Assert.Equal(replyType, header.ReplyType);
        return System.Text.Encoding.UTF8.GetString(payload);
    }

    public byte[] ReadExactly(int length)
    {
        var buffer = new byte[length];
        stream.ReadExactly(buffer);
        return buffer;
    }

    /// <summary>True when the server closed the connection (EOF or reset) without sending anything more.</summary>
    public void ExpectClosed()
    {
        var buffer = new byte[1];
        int read;
        try
        {
            read = stream.Read(buffer);
        }
        catch (IOException e) when (e.InnerException is SocketException { SocketErrorCode: SocketError.ConnectionReset })
        {
            return;
        }

        Assert.True(read == 0, $"the server sent byte 0x{buffer[0]:x2} instead of closing the connection");
    }

    /// <summary>After the server's STARTTLS ACK: the TLS handshake as a client, trusting only <paramref name="ca"/>.</summary>
    public void UpgradeToTls(X509Certificate2 ca, X509Certificate2? clientCertificate = null)
    {
        var ssl = new SslStream(stream, leaveInnerStreamOpen: false);
        var options = new SslClientAuthenticationOptions
        {
            TargetHost = "localhost",
            EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
            CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
            CertificateChainPolicy = new X509ChainPolicy
            {
                TrustMode = X509ChainTrustMode.CustomRootTrust,
                RevocationMode = X509RevocationMode.NoCheck,
                CustomTrustStore = { ca },
            },
        };
        if (clientCertificate is not null)
        {
            options.ClientCertificates = [clientCertificate];
        }
        options.RemoteCertificateValidationCallback = (_, _, _, errors) => errors == SslPolicyErrors.None;
        stream = ssl;
        using var timeout = new CancellationTokenSource(Timeout);
        ssl.AuthenticateAsClientAsync(options, timeout.Token).GetAwaiter().GetResult();
    }

    public void Dispose()
    {
        stream.Dispose();
        socket.Dispose();
    }
}
