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
                    var session = NegotiationOptions.InfoOrGo(state, server, replies, option.Option, payload.Span);
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
                    NegotiationOptions.Answer(state, server, replies, option.Option, payload.Span);
                    await replies.SendAsync(state.Transport, cancellationToken).ConfigureAwait(false);
                    break;
            }
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

        var export = server.FindExport(name) ?? throw new NbdProtocolException($"EXPORT_NAME: export '{NegotiationOptions.Sanitize(name)}' not present");
        ushort flags = NegotiationExportInfo.TransmissionFlags(export, state.StructuredReplies, server.Options);
        var reply = replies.AddRaw(state.NoZeroes ? NbdHandshake.ExportNameReplySize : NbdHandshake.ExportNameReplyPaddedSize);
        NbdHandshake.WriteExportNameReply(reply, (ulong)export.Device.Size, flags, state.NoZeroes);
        await replies.SendAsync(state.Transport, cancellationToken).ConfigureAwait(false);
        return NegotiationOptions.Session(state, export, flags);
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
}
