using System.Net.Sockets;
using Qed.Nbd.Protocol;
using Qed.Nbd.Transport;

namespace Qed.Nbd.Server;

/// <summary>The handshake of one connection: greeting, options (TLS included), until GO or EXPORT_NAME chooses an export.</summary>
/// <remarks>
/// The state machine of NBD.md 1.9. Options are handled strictly one at a time (a client waits for the final reply
/// before sending the next). Every option's payload is consumed whole before it is judged, so a refused option never
/// desynchronises the stream; what leaves the stream unparseable (bad magic, oversized length, unknown client flags,
/// too many options, a bad EXPORT_NAME) ends in a drop.
/// </remarks>
internal static class NbdNegotiation
{
    /// <summary>Most queries one LIST/SET_META_CONTEXT may carry; more get ERR_TOO_BIG (we offer two contexts).</summary>
    internal const int MaxMetaContextQueries = 128;

    // The ERR_SHUTDOWN courtesy reply and ABORT's ACK must not hang a stopping server on a client that reads nothing.
    private static readonly TimeSpan s_farewellTimeout = TimeSpan.FromSeconds(1);

    /// <summary>
    /// Runs the handshake on <paramref name="transport"/>. Returns the session to serve, or null when the client ended
    /// the handshake (ABORT, or closed) or must be dropped (protocol violation); the caller then closes the connection.
    /// The returned session's transport may differ from <paramref name="transport"/> (after STARTTLS).
    /// </summary>
    /// <exception cref="NbdProtocolException">The client broke the protocol: drop it.</exception>
    public static async ValueTask<NbdSession?> NegotiateAsync(NbdTransport transport, NbdServerContext server, CancellationToken cancellationToken)
    {
        var state = new NegotiationState(transport);
        NbdSession? session = null;
        try
        {
            session = await RunAsync(state, server, cancellationToken).ConfigureAwait(false);
            return session;
        }
        finally
        {
            // The caller only knows the original transport; a TLS stream made here and not handed over is closed here.
            if (session is null && !ReferenceEquals(state.Transport, transport))
            {
                await state.Transport.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    private static async ValueTask<NbdSession?> RunAsync(NegotiationState state, NbdServerContext server, CancellationToken cancellationToken)
    {
        var greeting = new byte[NbdHandshake.GreetingSize];
        NbdHandshake.WriteGreeting(greeting, NbdHandshake.GreetingFlags);
        await state.Transport.WriteAsync(greeting, ReadOnlyMemory<byte>.Empty, cancellationToken).ConfigureAwait(false);

        var header = new byte[NbdHandshake.OptionHeaderSize];
        if (!await state.Transport.ReadExactlyAsync(header.AsMemory(0, NbdHandshake.ClientFlagsSize), cancellationToken).ConfigureAwait(false))
        {
            return null; // gone before saying anything
        }

        if (!NbdHandshake.TryReadClientFlags(header.AsSpan(0, NbdHandshake.ClientFlagsSize), NbdHandshake.GreetingFlags, out uint clientFlags, out string? error))
        {
            throw new NbdProtocolException(error!);
        }

        state.FixedNewstyle = (clientFlags & NbdHandshakeFlags.ClientFixedNewstyle) != 0;
        state.NoZeroes = (clientFlags & NbdHandshakeFlags.ClientNoZeroes) != 0;
        var replies = new NegotiationReplies();
        while (true)
        {
            if (!await state.Transport.ReadExactlyAsync(header, cancellationToken).ConfigureAwait(false))
            {
                return null; // the client left between options
            }

            if (!NbdHandshake.TryReadOptionHeader(header, NbdLimits.DefaultMaxOptionLength, out var option, out error))
            {
                throw new NbdProtocolException(error!); // nothing is read or allocated for a hostile length
            }

            if (++state.OptionCount > server.Options.MaxOptions)
            {
                throw new NbdProtocolException($"more than {server.Options.MaxOptions} options without choosing an export");
            }

            var payload = state.Payload((int)option.Length);
            if (!payload.IsEmpty && !await state.Transport.ReadExactlyAsync(payload, cancellationToken).ConfigureAwait(false))
            {
                throw new EndOfStreamException($"the client closed the connection before the payload of option {option.Option}");
            }

            if (!state.FixedNewstyle && option.Option != NbdOption.ExportName)
            {
                // Plain newstyle has no option replies to refuse with (qemu-nbd drops too).
                throw new NbdProtocolException($"option {option.Option} from a client without fixed newstyle");
            }

            if (server.Stopping.IsCancellationRequested)
            {
                await ShutdownReplyAsync(state, replies, option).ConfigureAwait(false);
                return null;
            }

            if (server.TlsRequired && !state.Transport.IsTls && option.Option is not (NbdOption.StartTls or NbdOption.Abort))
            {
                if (option.Option == NbdOption.ExportName)
                {
                    throw new NbdProtocolException("EXPORT_NAME before TLS"); // it cannot carry an error (NBD.md 5.1)
                }

                replies.Error(option.Option, NbdOptionReply.ErrTlsReqd, $"Option {option.Option} not permitted before TLS");
                await replies.SendAsync(state.Transport, cancellationToken).ConfigureAwait(false);
                continue;
            }

            switch (option.Option)
            {
                case NbdOption.ExportName:
                    return await ExportNameAsync(state, server, replies, payload, cancellationToken).ConfigureAwait(false);
                case NbdOption.Abort:
                    await AbortAsync(state, replies).ConfigureAwait(false);
                    return null;
                case NbdOption.Info:
                case NbdOption.Go:
                    var session = InfoOrGo(state, server, replies, option.Option, payload.Span);
                    await replies.SendAsync(state.Transport, cancellationToken).ConfigureAwait(false);
                    if (session is not null)
                    {
                        return session;
                    }

                    break;
                case NbdOption.StartTls:
                    await StartTlsAsync(state, server, replies, payload.Length, cancellationToken).ConfigureAwait(false);
                    break;
                default:
                    Answer(state, server, replies, option.Option, payload.Span);
                    await replies.SendAsync(state.Transport, cancellationToken).ConfigureAwait(false);
                    break;
            }
        }
    }

    /// <summary>The options that only answer and leave the handshake where it was.</summary>
    private static void Answer(NegotiationState state, NbdServerContext server, NegotiationReplies replies, uint option, ReadOnlySpan<byte> payload)
    {
        switch (option)
        {
            case NbdOption.List:
                List(server, replies, payload.Length);
                break;
            case NbdOption.StructuredReply:
                StructuredReply(state, replies, payload.Length);
                break;
            case NbdOption.ListMetaContext:
            case NbdOption.SetMetaContext:
                MetaContext(state, server, replies, option, payload);
                break;
            default:
                // EXTENDED_HEADERS and the withdrawn PEEK_EXPORT included: clients fall back (NBD.md 1.5).
                replies.Error(option, NbdOptionReply.ErrUnsup, $"Unsupported option {option}");
                break;
        }
    }

    private static async ValueTask<NbdSession?> ExportNameAsync(
        NegotiationState state, NbdServerContext server, NegotiationReplies replies, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken)
    {
        // EXPORT_NAME has no error reply: anything wrong ends the connection.
        if (!NbdHandshake.TryDecodeString(payload.Span, "export name", out string name, out string? error))
        {
            throw new NbdProtocolException($"EXPORT_NAME: {error}");
        }

        var export = server.FindExport(name) ?? throw new NbdProtocolException($"EXPORT_NAME: export '{Sanitize(name)}' not present");
        ushort flags = NegotiationExportInfo.TransmissionFlags(export, state.StructuredReplies, server.Options);
        var reply = replies.AddRaw(state.NoZeroes ? NbdHandshake.ExportNameReplySize : NbdHandshake.ExportNameReplyPaddedSize);
        NbdHandshake.WriteExportNameReply(reply, (ulong)export.Device.Size, flags, state.NoZeroes);
        await replies.SendAsync(state.Transport, cancellationToken).ConfigureAwait(false);
        return Session(state, export, flags);
    }

    private static async ValueTask AbortAsync(NegotiationState state, NegotiationReplies replies)
    {
        // The client may close before reading the ACK (nbd-client -l, nbdinfo --list): that is its right.
        replies.Ack(NbdOption.Abort);
        using var farewell = new CancellationTokenSource(s_farewellTimeout);
        try
        {
            await replies.SendAsync(state.Transport, farewell.Token).ConfigureAwait(false);
            await state.Transport.ShutdownAsync(farewell.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
        {
        }
    }

    private static async ValueTask ShutdownReplyAsync(NegotiationState state, NegotiationReplies replies, NbdOptionHeader option)
    {
        if (option.Option == NbdOption.ExportName)
        {
            return; // no way to say it: just close
        }

        replies.Error(option.Option, NbdOptionReply.ErrShutdown, "Server is shutting down");
        using var farewell = new CancellationTokenSource(s_farewellTimeout);
        try
        {
            await replies.SendAsync(state.Transport, farewell.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
        {
        }
    }

    private static void List(NbdServerContext server, NegotiationReplies replies, int payloadLength)
    {
        if (payloadLength != 0)
        {
            replies.Error(NbdOption.List, NbdOptionReply.ErrInvalid, "LIST must not have a payload");
            return;
        }

        foreach (var export in server.Exports)
        {
            var payload = replies.Add(NbdOption.List, NbdOptionReply.Server, NbdHandshake.ServerReplyLength(export.Name, export.Description));
            NbdHandshake.WriteServerReply(payload, export.Name, export.Description);
        }

        replies.Ack(NbdOption.List);
    }

    private static void StructuredReply(NegotiationState state, NegotiationReplies replies, int payloadLength)
    {
        if (payloadLength != 0)
        {
            replies.Error(NbdOption.StructuredReply, NbdOptionReply.ErrInvalid, "STRUCTURED_REPLY must not have a payload");
        }
        else if (state.StructuredReplies)
        {
            replies.Error(NbdOption.StructuredReply, NbdOptionReply.ErrInvalid, "structured replies already negotiated");
        }
        else
        {
            state.StructuredReplies = true;
            replies.Ack(NbdOption.StructuredReply);
        }
    }

    /// <summary>INFO and GO share everything but the end: GO returns the session after its ACK, INFO stays.</summary>
    private static NbdSession? InfoOrGo(NegotiationState state, NbdServerContext server, NegotiationReplies replies, uint option, ReadOnlySpan<byte> payload)
    {
        if (!NbdHandshake.TryReadInfoRequest(payload, out string name, out ushort[] infos, out string? error))
        {
            replies.Error(option, NbdOptionReply.ErrInvalid, error!);
            return null;
        }

        var export = server.FindExport(name);
        if (export is null)
        {
            replies.Error(option, NbdOptionReply.ErrUnknown, $"export '{Sanitize(name)}' not present");
            return null;
        }

        // NBD_INFO_EXPORT always (qemu's client never asks and fails without it); BLOCK_SIZE and a configured
        // DESCRIPTION always too, as qemu-nbd; NAME when asked. Unknown info requests are ignored (NBD.md 1.5).
        ushort flags = NegotiationExportInfo.TransmissionFlags(export, state.StructuredReplies, server.Options);
        NbdHandshake.WriteInfoExport(replies.Add(option, NbdOptionReply.Info, NbdHandshake.InfoExportSize), (ulong)export.Device.Size, flags);
        if (Array.IndexOf(infos, NbdInfo.Name) >= 0)
        {
            AddInfoText(replies, option, NbdInfo.Name, export.Name);
        }

        if (export.Description is not null)
        {
            AddInfoText(replies, option, NbdInfo.Description, export.Description);
        }

        var sizes = NegotiationExportInfo.BlockSizes(export, server.Options);
        NbdHandshake.WriteInfoBlockSize(replies.Add(option, NbdOptionReply.Info, NbdHandshake.InfoBlockSizeSize), sizes);
        replies.Ack(option);
        return option == NbdOption.Go ? Session(state, export, flags) : null;
    }

    private static void AddInfoText(NegotiationReplies replies, uint option, ushort infoType, string text)
    {
        text = CapString(text);
        NbdHandshake.WriteInfoText(replies.Add(option, NbdOptionReply.Info, NbdHandshake.InfoTextLength(text)), infoType, text);
    }

    private static void MetaContext(NegotiationState state, NbdServerContext server, NegotiationReplies replies, uint option, ReadOnlySpan<byte> payload)
    {
        bool set = option == NbdOption.SetMetaContext;
        if (set && !state.StructuredReplies)
        {
            replies.Error(option, NbdOptionReply.ErrInvalid, "structured replies not negotiated");
            return;
        }

        if (!NbdHandshake.TryReadMetaContextRequest(payload, MaxMetaContextQueries, out string name, out string[] queries, out bool tooMany, out string? error))
        {
            replies.Error(option, tooMany ? NbdOptionReply.ErrTooBig : NbdOptionReply.ErrInvalid, error!);
            return;
        }

        var export = server.FindExport(name);
        if (export is null)
        {
            replies.Error(option, NbdOptionReply.ErrUnknown, $"export '{Sanitize(name)}' not present");
            return;
        }

        var (baseAllocation, allocationDepth) = NegotiationMetaContexts.Select(export, queries, list: !set);
        if (baseAllocation)
        {
            AddMetaContext(replies, option, set ? NegotiationMetaContexts.BaseAllocationId : 0, NegotiationMetaContexts.BaseAllocation);
        }

        if (allocationDepth)
        {
            AddMetaContext(replies, option, set ? NegotiationMetaContexts.AllocationDepthId : 0, NegotiationMetaContexts.AllocationDepth);
        }

        replies.Ack(option);
        if (set)
        {
            state.SelectMetaContexts(
                export,
                baseAllocation ? NegotiationMetaContexts.BaseAllocationId : 0,
                allocationDepth ? NegotiationMetaContexts.AllocationDepthId : 0);
        }
    }

    private static void AddMetaContext(NegotiationReplies replies, uint option, uint id, string name) =>
        NbdHandshake.WriteMetaContextReply(replies.Add(option, NbdOptionReply.MetaContext, NbdHandshake.MetaContextReplyLength(name)), id, name);

    private static async ValueTask StartTlsAsync(NegotiationState state, NbdServerContext server, NegotiationReplies replies, int payloadLength, CancellationToken cancellationToken)
    {
        if (!server.TlsRequired)
        {
            replies.Error(NbdOption.StartTls, NbdOptionReply.ErrPolicy, "TLS not configured");
        }
        else if (payloadLength != 0)
        {
            replies.Error(NbdOption.StartTls, NbdOptionReply.ErrInvalid, "STARTTLS must not have a payload");
        }
        else if (state.Transport.IsTls)
        {
            replies.Error(NbdOption.StartTls, NbdOptionReply.ErrInvalid, "TLS already negotiated");
        }
        else if (state.Transport.BufferedBytes > 0)
        {
            // Bytes sent before our ACK would be read as TLS records or skipped: a conforming client waits (NBD.md 5.3).
            throw new NbdProtocolException($"{state.Transport.BufferedBytes} bytes arrived after STARTTLS before its reply");
        }
        else if (state.Transport is not SocketTransport socketTransport)
        {
            replies.Error(NbdOption.StartTls, NbdOptionReply.ErrPlatform, "TLS not available on this connection");
        }
        else
        {
            replies.Ack(NbdOption.StartTls);
            await replies.SendAsync(state.Transport, cancellationToken).ConfigureAwait(false);
            state.StartTls(await NegotiationTls.UpgradeAsync(socketTransport.Socket, server.Options, cancellationToken).ConfigureAwait(false));
            return;
        }

        await replies.SendAsync(state.Transport, cancellationToken).ConfigureAwait(false);
    }

    private static NbdSession Session(NegotiationState state, NbdExport export, ushort flags)
    {
        var (baseAllocation, allocationDepth) = state.MetaContextsFor(export);
        return new NbdSession(state.Transport, export, flags)
        {
            StructuredReplies = state.StructuredReplies,
            BaseAllocationContextId = baseAllocation,
            AllocationDepthContextId = allocationDepth,
        };
    }

    /// <summary>A client's name inside our message: short and printable (qemu cuts at 80 characters too).</summary>
    private static string Sanitize(string name)
    {
        const int MaxShown = 80;
        var shown = name.Length > MaxShown ? name[..MaxShown] + "..." : name;
        return string.Create(shown.Length, shown, static (span, text) =>
        {
            for (int i = 0; i < span.Length; i++)
            {
                span[i] = char.IsControl(text[i]) ? '?' : text[i];
            }
        });
    }

    /// <summary>Protocol strings must not exceed 4096 bytes; an operator's longer description is cut on a character boundary.</summary>
    private static string CapString(string text)
    {
        byte[] bytes = Wire.Utf8(text);
        int length = Wire.Utf8PrefixLength(bytes, NbdLimits.MaxStringBytes);
        return length == bytes.Length ? text : System.Text.Encoding.UTF8.GetString(bytes, 0, length);
    }
}
