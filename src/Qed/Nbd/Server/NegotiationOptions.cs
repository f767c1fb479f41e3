using Qed.Nbd.Protocol;

namespace Qed.Nbd.Server;

/// <summary>
/// The options that answer from what the handshake knows (NBD.md 1.5-1.7, 4): LIST, STRUCTURED_REPLY, INFO/GO,
/// LIST/SET_META_CONTEXT and the unsupported ones. Each appends its replies to <see cref="NegotiationReplies"/>; the
/// caller sends them. The payload was read whole before, so a refusal never desynchronises the stream.
/// </summary>
internal static class NegotiationOptions
{
    /// <summary>Most queries one LIST/SET_META_CONTEXT may carry; more get ERR_TOO_BIG (we offer two contexts).</summary>
    public const int MaxMetaContextQueries = 128;

    /// <summary>The options that only answer and leave the handshake where it was.</summary>
    public static void Answer(NegotiationState state, NbdServerContext server, NegotiationReplies replies, uint option, ReadOnlySpan<byte> payload)
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
    public static NbdSession? InfoOrGo(NegotiationState state, NbdServerContext server, NegotiationReplies replies, uint option, ReadOnlySpan<byte> payload)
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

    public static NbdSession Session(NegotiationState state, NbdExport export, ushort flags)
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
    public static string Sanitize(string name)
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
