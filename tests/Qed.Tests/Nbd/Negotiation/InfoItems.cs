using Qed.Nbd.Protocol;

namespace Qed.Tests.Nbd.Negotiation;

/// <summary>The NBD_INFO items of one INFO/GO answer, parsed with our readers; each item at most once.</summary>
internal sealed record InfoItems(ulong Size, ushort Flags, string? Name, string? Description, NbdBlockSize? BlockSize, IReadOnlyList<ushort> Order)
{
    /// <summary>Parses the replies of an INFO/GO that ended in ACK.</summary>
    public static InfoItems Parse(List<(NbdOptionReplyHeader Header, byte[] Payload)> replies)
    {
        Assert.Equal(NbdOptionReply.Ack, replies[^1].Header.ReplyType);
        Assert.Empty(replies[^1].Payload);
        ulong? size = null;
        ushort flags = 0;
        string? name = null;
        string? description = null;
        NbdBlockSize? blockSize = null;
        var order = new List<ushort>();
        foreach (var (header, payload) in replies.SkipLast(1))
        {
            Assert.Equal(NbdOptionReply.Info, header.ReplyType);
            Assert.True(NbdHandshake.TryReadInfoType(payload, out ushort type, out string? error), error);
            Assert.DoesNotContain(type, order);
            order.Add(type);
            switch (type)
            {
                case NbdInfo.Export:
                    Assert.True(NbdHandshake.TryReadInfoExport(payload, out ulong exportSize, out flags, out error), error);
                    size = exportSize;
                    break;
                case NbdInfo.Name:
                    Assert.True(NbdHandshake.TryReadInfoText(payload, NbdInfo.Name, out string text, out error), error);
                    name = text;
                    break;
                case NbdInfo.Description:
                    Assert.True(NbdHandshake.TryReadInfoText(payload, NbdInfo.Description, out text, out error), error);
                    description = text;
                    break;
                case NbdInfo.BlockSize:
                    Assert.True(NbdHandshake.TryReadInfoBlockSize(payload, out var sizes, out error), error);
                    blockSize = sizes;
                    break;
                default:
                    Assert.Fail($"unexpected info type {type}");
                    break;
            }
        }
        Assert.True(size.HasValue, "NBD_INFO_EXPORT missing");
        return new InfoItems(size.Value, flags, name, description, blockSize, order);
    }
}
