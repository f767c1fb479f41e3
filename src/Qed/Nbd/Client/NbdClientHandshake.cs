using System.Net.Security;
using System.Net.Sockets;
using System.Numerics;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Qed.Nbd.Protocol;
using Qed.Nbd.Transport;

namespace Qed.Nbd.Client;

/// <summary>
/// The client side of the fixed-newstyle handshake (NBD.md 1.3-1.7): STRUCTURED_REPLY, SET_META_CONTEXT
/// <c>base:allocation</c>, then GO with NAME, DESCRIPTION and BLOCK_SIZE requested; EXPORT_NAME when the server does not
/// know GO (or speaks plain newstyle), no structured replies when it refuses them.
/// </summary>
/// <remarks>Every length from the server is checked before a buffer is sized from it; anything unexpected ends the handshake with one line naming the server and what it did.</remarks>
internal sealed class NbdClientHandshake
{
    private const string BaseAllocation = "base:allocation";
    private const uint DefaultPreferredBlockSize = 4096;
    private const uint MaxMinimumBlockSize = 64 * 1024;

    private static readonly ushort[] s_infoRequests = [NbdInfo.Name, NbdInfo.Description, NbdInfo.BlockSize];

    private NbdTransport _transport;
    private readonly string _exportName;
    private readonly NbdClientOptions _options;
    private readonly string _server;
    private bool _noZeroes;

    private NbdClientHandshake(NbdTransport transport, string exportName, NbdClientOptions options, string server)
    {
        _transport = transport;
        _exportName = exportName;
        _options = options;
        _server = server;
    }

    /// <summary>
    /// Runs the handshake on a fresh connection; on return, transmission has begun on the returned transport (the TLS
    /// one after STARTTLS, which then owns the connection; else <paramref name="transport"/>).
    /// </summary>
    /// <exception cref="NbdException">The server refused the export or TLS, or broke the protocol.</exception>
    public static async Task<(NbdExportInfo Info, NbdTransport Transport)> NegotiateAsync(NbdTransport transport, string exportName, NbdClientOptions options, string server, CancellationToken cancellationToken)
    {
        var handshake = new NbdClientHandshake(transport, exportName, options, server);
        try
        {
            var info = await handshake.RunAsync(cancellationToken).ConfigureAwait(false);
            return (info, handshake._transport);
        }
        catch when (handshake._transport != transport)
        {
            await handshake._transport.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    private async Task<NbdExportInfo> RunAsync(CancellationToken cancellationToken)
    {
        var greeting = new byte[NbdHandshake.GreetingSize];
        await ReadExactlyAsync(greeting, "the greeting", cancellationToken).ConfigureAwait(false);
        if (!NbdHandshake.TryReadGreeting(greeting, out ushort handshakeFlags, out string? error))
        {
            throw Fail($"not an NBD server: {error}");
        }
        bool fixedNewstyle = (handshakeFlags & NbdHandshakeFlags.FixedNewstyle) != 0;
        _noZeroes = (handshakeFlags & NbdHandshakeFlags.NoZeroes) != 0;
        uint clientFlags = (fixedNewstyle ? NbdHandshakeFlags.ClientFixedNewstyle : 0) | (_noZeroes ? NbdHandshakeFlags.ClientNoZeroes : 0);
        var flags = new byte[NbdHandshake.ClientFlagsSize];
        NbdHandshake.WriteClientFlags(flags, clientFlags);
        await _transport.WriteAsync(flags, ReadOnlyMemory<byte>.Empty, cancellationToken).ConfigureAwait(false);

        if (!fixedNewstyle)
        {
            // Plain newstyle: EXPORT_NAME is the only legal option (NBD.md 1.3), and TLS is impossible.
            return _options.Tls is null
                ? await ExportNameAsync(structuredReplies: false, cancellationToken).ConfigureAwait(false)
                : throw Fail("the server does not speak fixed newstyle, which TLS needs");
        }
        if (_options.Tls is { } tls)
        {
            await StartTlsAsync(tls, cancellationToken).ConfigureAwait(false);
        }

        bool structured = _options.StructuredReplies && await StructuredRepliesAsync(cancellationToken).ConfigureAwait(false);
        uint? contextId = structured && _options.BaseAllocation ? await SetMetaContextAsync(cancellationToken).ConfigureAwait(false) : null;
        if (_options.UseGo && await GoAsync(structured, contextId, cancellationToken).ConfigureAwait(false) is { } info)
        {
            return info;
        }
        // EXPORT_NAME after a SET_META_CONTEXT keeps the selection (the spec ties contexts to the export, not to GO).
        var fallback = await ExportNameAsync(structured, cancellationToken).ConfigureAwait(false);
        return fallback with { BaseAllocationId = contextId };
    }

    /// <summary>STARTTLS, then the TLS handshake on the same socket (NBD.md 5.1); everything after it is encrypted.</summary>
    private async Task StartTlsAsync(NbdClientTls tls, CancellationToken cancellationToken)
    {
        await SendOptionAsync(NbdOption.StartTls, [], cancellationToken).ConfigureAwait(false);
        var (header, payload) = await ReadReplyAsync(NbdOption.StartTls, cancellationToken).ConfigureAwait(false);
        if (header.ReplyType != NbdOptionReply.Ack)
        {
            throw NbdOptionReply.IsError(header.ReplyType)
                ? Fail($"the server refused TLS ({NbdErrors.OptionReply(header.ReplyType)}){Message(payload)}")
                : Unexpected(NbdOption.StartTls, header.ReplyType);
        }
        if (_transport is not SocketTransport plain || plain.BufferedBytes != 0)
        {
            // Bytes after the ACK and before the TLS handshake could only be an attacker's injection (NBD.md 5.3).
            throw Fail("data arrived between the STARTTLS ACK and the TLS handshake");
        }
        var authentication = ClientAuthentication(tls, out Func<string> rejection);
        var ssl = new SslStream(new NetworkStream(plain.Socket, ownsSocket: true), leaveInnerStreamOpen: false);
        _transport = new StreamTransport(ssl); // owns the socket from here, also if the handshake fails
        try
        {
            await ssl.AuthenticateAsClientAsync(authentication, cancellationToken).ConfigureAwait(false);
        }
        catch (AuthenticationException e)
        {
            throw Fail($"TLS handshake failed: {rejection() ?? e.Message}");
        }
    }

    /// <summary>The client's TLS settings: the CAs of the certificates directory (or the system's), its client certificate, and the name to check.</summary>
    private SslClientAuthenticationOptions ClientAuthentication(NbdClientTls tls, out Func<string> rejection)
    {
        var options = new SslClientAuthenticationOptions
        {
            TargetHost = tls.HostName ?? "localhost",
            // A session resumed from a connection that sent no client certificate would send none now either, and a
            // server that requires one then refuses it (seen with two servers on one machine): always a full handshake.
            AllowTlsResume = false,
            EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
            CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
        };
        string? why = null;
        rejection = () => why!;
        if (tls.CertificatesDirectory is { } directory)
        {
            string ca = Path.Combine(directory, "ca-cert.pem");
            string certificate = Path.Combine(directory, "client-cert.pem");
            string key = Path.Combine(directory, "client-key.pem");
            try
            {
                if (tls.VerifyPeer)
                {
                    // Trust exactly the directory's CAs, as libnbd and qemu do with a credentials directory.
                    var authorities = new X509Certificate2Collection();
                    authorities.ImportFromPemFile(ca);
                    var policy = new X509ChainPolicy { TrustMode = X509ChainTrustMode.CustomRootTrust, RevocationMode = X509RevocationMode.NoCheck };
                    policy.CustomTrustStore.AddRange(authorities);
                    options.CertificateChainPolicy = policy;
                }
                if (File.Exists(certificate))
                {
                    using var pem = X509Certificate2.CreateFromPemFile(certificate, key);
                    // Through PKCS#12 so the key is usable by the TLS stack on every platform.
                    var loaded = X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null);
                    options.ClientCertificates = [loaded];
                    // Sent whenever the server asks, whatever CA names it lists.
                    options.LocalCertificateSelectionCallback = (_, _, _, _, _) => loaded;
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Security.Cryptography.CryptographicException or ArgumentException)
            {
                throw Fail($"cannot load the TLS certificates in '{directory}': {e.Message}");
            }
        }
        options.RemoteCertificateValidationCallback = (_, _, _, errors) =>
        {
            if (!tls.VerifyPeer || errors == SslPolicyErrors.None)
            {
                return true;
            }
            why = (errors & SslPolicyErrors.RemoteCertificateNameMismatch) != 0
                ? $"the server's certificate is not for '{options.TargetHost}'"
                : (errors & SslPolicyErrors.RemoteCertificateNotAvailable) != 0
                    ? "the server sent no certificate"
                    : "the server's certificate is not signed by a trusted CA";
            return false;
        };
        return options;
    }

    private async Task<bool> StructuredRepliesAsync(CancellationToken cancellationToken)
    {
        await SendOptionAsync(NbdOption.StructuredReply, [], cancellationToken).ConfigureAwait(false);
        var (header, payload) = await ReadReplyAsync(NbdOption.StructuredReply, cancellationToken).ConfigureAwait(false);
        if (header.ReplyType == NbdOptionReply.Ack)
        {
            return payload.Length == 0 ? true : throw Fail($"ACK of STRUCTURED_REPLY carries {payload.Length} bytes");
        }
        // Any refusal leaves simple replies, which every server must support.
        return NbdOptionReply.IsError(header.ReplyType) ? false : throw Unexpected(NbdOption.StructuredReply, header.ReplyType);
    }

    /// <summary>Selects <c>base:allocation</c>; returns its context id, or null when the server offers no such context.</summary>
    private async Task<uint?> SetMetaContextAsync(CancellationToken cancellationToken)
    {
        string[] queries = [BaseAllocation];
        var payload = new byte[NbdHandshake.MetaContextRequestLength(_exportName, queries)];
        NbdHandshake.WriteMetaContextRequest(payload, _exportName, queries);
        await SendOptionAsync(NbdOption.SetMetaContext, payload, cancellationToken).ConfigureAwait(false);
        uint? id = null;
        while (true)
        {
            var (header, reply) = await ReadReplyAsync(NbdOption.SetMetaContext, cancellationToken).ConfigureAwait(false);
            if (header.ReplyType == NbdOptionReply.Ack)
            {
                return id;
            }
            if (NbdOptionReply.IsError(header.ReplyType))
            {
                // No block status then; the export may still exist (GO says).
                return null;
            }
            if (header.ReplyType != NbdOptionReply.MetaContext)
            {
                throw Unexpected(NbdOption.SetMetaContext, header.ReplyType);
            }
            if (!NbdHandshake.TryReadMetaContextReply(reply, out var context, out string? error))
            {
                throw Fail($"bad META_CONTEXT reply: {error}");
            }
            var (contextId, name) = context;
            if (name != BaseAllocation)
            {
                throw Fail($"SET_META_CONTEXT selected '{name}', which was not asked for");
            }
            if (id is not null)
            {
                throw Fail($"SET_META_CONTEXT selected '{name}' twice");
            }
            id = contextId;
        }
    }

    /// <summary>GO; null when the server does not know the option (then EXPORT_NAME follows).</summary>
    private async Task<NbdExportInfo?> GoAsync(bool structured, uint? contextId, CancellationToken cancellationToken)
    {
        var payload = new byte[NbdHandshake.InfoRequestLength(_exportName, s_infoRequests.Length)];
        NbdHandshake.WriteInfoRequest(payload, _exportName, s_infoRequests);
        await SendOptionAsync(NbdOption.Go, payload, cancellationToken).ConfigureAwait(false);

        (ulong Size, ushort Flags)? export = null;
        NbdBlockSize? blockSize = null;
        string? name = null;
        string? description = null;
        int replies = 0;
        while (true)
        {
            var (header, reply) = await ReadReplyAsync(NbdOption.Go, cancellationToken).ConfigureAwait(false);
            if (header.ReplyType == NbdOptionReply.Ack)
            {
                if (export is not { } settled)
                {
                    throw Fail("GO ended without NBD_INFO_EXPORT (size and flags)");
                }
                return Settle(settled.Size, settled.Flags, blockSize, name, description, structured, contextId, usedExportName: false);
            }
            if (header.ReplyType == NbdOptionReply.ErrUnsup && replies == 0)
            {
                return null;
            }
            if (NbdOptionReply.IsError(header.ReplyType))
            {
                throw Refused(header.ReplyType, reply);
            }
            if (header.ReplyType != NbdOptionReply.Info)
            {
                throw Unexpected(NbdOption.Go, header.ReplyType);
            }
            replies++;
            if (!NbdHandshake.TryReadInfoType(reply, out ushort infoType, out string? error))
            {
                throw Fail($"bad INFO reply: {error}");
            }
            switch (infoType)
            {
                case NbdInfo.Export:
                    export = NbdHandshake.TryReadInfoExport(reply, out ulong size, out ushort flags, out error) ? (size, flags) : throw Fail($"bad NBD_INFO_EXPORT: {error}");
                    break;
                case NbdInfo.BlockSize:
                    blockSize = NbdHandshake.TryReadInfoBlockSize(reply, out var sizes, out error) ? sizes : throw Fail($"bad NBD_INFO_BLOCK_SIZE: {error}");
                    break;
                case NbdInfo.Name:
                    // Names and descriptions are informative: a bad one is dropped, not fatal.
                    name = NbdHandshake.TryReadInfoText(reply, NbdInfo.Name, out string text, out _) ? text : name;
                    break;
                case NbdInfo.Description:
                    description = NbdHandshake.TryReadInfoText(reply, NbdInfo.Description, out text, out _) ? text : description;
                    break;
                default:
                    break; // unknown info types are ignored (NBD.md 1.5)
            }
        }
    }

    private async Task<NbdExportInfo> ExportNameAsync(bool structuredReplies, CancellationToken cancellationToken)
    {
        await SendOptionAsync(NbdOption.ExportName, Encoding.UTF8.GetBytes(_exportName), cancellationToken).ConfigureAwait(false);
        var reply = new byte[_noZeroes ? NbdHandshake.ExportNameReplySize : NbdHandshake.ExportNameReplyPaddedSize];
        if (!await _transport.ReadExactlyAsync(reply, cancellationToken).ConfigureAwait(false))
        {
            // EXPORT_NAME cannot carry an error: a server without the export just closes (NBD.md 1.5).
            throw Fail($"the server closed the connection: export '{_exportName}' is not available");
        }
        ulong size = System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(reply);
        ushort flags = System.Buffers.Binary.BinaryPrimitives.ReadUInt16BigEndian(reply.AsSpan(8));
        if ((flags & NbdTransmissionFlags.HasFlags) == 0)
        {
            throw Fail($"export transmission flags 0x{flags:x4} lack HAS_FLAGS");
        }
        return Settle(size, flags, null, null, null, structuredReplies, null, usedExportName: true);
    }

    private NbdExportInfo Settle(ulong size, ushort flags, NbdBlockSize? blockSize, string? name, string? description, bool structured, uint? contextId, bool usedExportName)
    {
        if (size > long.MaxValue)
        {
            throw Fail($"export size {size} is too large");
        }
        // Flags that mean nothing in this session are dropped, as libnbd does (NBD.md 1.7).
        if (!structured)
        {
            flags &= unchecked((ushort)~NbdTransmissionFlags.SendDf);
        }
        if ((flags & NbdTransmissionFlags.SendWriteZeroes) == 0)
        {
            flags &= unchecked((ushort)~NbdTransmissionFlags.SendFastZero);
        }
        bool valid = blockSize is { } b && ValidBlockSizes(b);
        uint minimum = valid ? blockSize!.Value.Minimum : 1;
        uint preferred = valid ? blockSize!.Value.Preferred : DefaultPreferredBlockSize;
        uint maximum = valid ? Math.Min(blockSize!.Value.Maximum, _options.MaxPayload) : _options.MaxPayload;
        // Whole minimum blocks only, so a split request stays aligned.
        maximum -= maximum % minimum;
        return new NbdExportInfo((long)size, flags, minimum, preferred, maximum, valid, name ?? _exportName, description, structured, contextId, usedExportName);
    }

    /// <summary>The rules of NBD.md 1.7: a triple that breaks them is ignored, as libnbd does.</summary>
    private static bool ValidBlockSizes(NbdBlockSize b) =>
        b.Minimum is >= 1 and <= MaxMinimumBlockSize && BitOperations.IsPow2(b.Minimum)
        && b.Preferred >= Math.Max(b.Minimum, 512) && BitOperations.IsPow2(b.Preferred)
        && b.Maximum >= b.Preferred && (b.Maximum == uint.MaxValue || b.Maximum % b.Minimum == 0);

    private async Task SendOptionAsync(uint option, byte[] payload, CancellationToken cancellationToken)
    {
        var header = new byte[NbdHandshake.OptionHeaderSize];
        NbdHandshake.WriteOptionHeader(header, option, (uint)payload.Length);
        await _transport.WriteAsync(header, payload, cancellationToken).ConfigureAwait(false);
    }

    private async Task<(NbdOptionReplyHeader Header, byte[] Payload)> ReadReplyAsync(uint option, CancellationToken cancellationToken)
    {
        var headerBytes = new byte[NbdHandshake.OptionReplyHeaderSize];
        await ReadExactlyAsync(headerBytes, $"the reply to {OptionName(option)}", cancellationToken).ConfigureAwait(false);
        // The length is checked here, before the payload buffer is sized from it.
        if (!NbdHandshake.TryReadOptionReplyHeader(headerBytes, NbdLimits.DefaultMaxOptionLength, out var header, out string? error))
        {
            throw Fail(error!);
        }
        if (header.Option != option)
        {
            throw Fail($"reply for option {header.Option} while {OptionName(option)} was asked");
        }
        var payload = new byte[header.Length];
        await ReadExactlyAsync(payload, $"the reply to {OptionName(option)}", cancellationToken).ConfigureAwait(false);
        return (header, payload);
    }

    private async Task ReadExactlyAsync(byte[] buffer, string what, CancellationToken cancellationToken)
    {
        bool read;
        try
        {
            read = await _transport.ReadExactlyAsync(buffer, cancellationToken).ConfigureAwait(false);
        }
        catch (EndOfStreamException)
        {
            read = false;
        }
        if (!read)
        {
            throw Fail($"the server closed the connection during {what}");
        }
    }

    /// <summary>The refusal of the export, with the server's own message (qemu: <c>export 'x' not present</c>).</summary>
    private NbdException Refused(uint replyType, byte[] payload)
    {
        string message = Message(payload);
        string what = replyType switch
        {
            NbdOptionReply.ErrUnknown => $"export '{_exportName}' is not available",
            NbdOptionReply.ErrTlsReqd => "the server requires TLS (use an nbds:// URI)",
            _ => $"export '{_exportName}' was refused ({NbdErrors.OptionReply(replyType)})",
        };
        return Fail(message.Length == 0 ? what : $"{what}: server reported{message}");
    }

    /// <summary>An error reply's text as <c>: text</c>, or empty.</summary>
    private static string Message(byte[] payload)
    {
        string message = Encoding.UTF8.GetString(payload, 0, Math.Min(payload.Length, NbdLimits.MaxStringBytes)).ReplaceLineEndings(" ").Trim();
        return message.Length == 0 ? "" : ": " + message;
    }

    private NbdException Unexpected(uint option, uint replyType) => Fail($"unexpected {NbdErrors.OptionReply(replyType)} reply to {OptionName(option)}");

    private NbdException Fail(string reason) => new($"NBD handshake with '{_server}' failed: {reason}");

    private static string OptionName(uint option) => option switch
    {
        NbdOption.ExportName => "EXPORT_NAME",
        NbdOption.StructuredReply => "STRUCTURED_REPLY",
        NbdOption.SetMetaContext => "SET_META_CONTEXT",
        NbdOption.Go => "GO",
        NbdOption.StartTls => "STARTTLS",
        _ => $"option {option}",
    };
}
