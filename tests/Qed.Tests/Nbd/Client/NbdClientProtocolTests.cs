using System.Buffers.Binary;
using Qed.Nbd.Client;
using Qed.Nbd.Protocol;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Nbd.Client;

/// <summary>The wire readers and writers the client added to <c>Qed.Nbd.Protocol</c>, and the READ coverage tracker.</summary>
public sealed class NbdClientProtocolTests
{
    [Fact]
    public void Meta_context_request_has_the_spec_layout()
    {
        string[] queries = ["base:allocation", "qemu:allocation-depth"];
        var payload = new byte[NbdHandshake.MetaContextRequestLength("é", queries)];
        Assert.Equal(payload.Length, NbdHandshake.WriteMetaContextRequest(payload, "é", queries));
        // u32 name length, name, u32 count, (u32 length, query)...
        Assert.Equal(2u, BinaryPrimitives.ReadUInt32BigEndian(payload));
        Assert.Equal("é"u8.ToArray(), payload[4..6]);
        Assert.Equal(2u, BinaryPrimitives.ReadUInt32BigEndian(payload.AsSpan(6)));
        Assert.Equal(15u, BinaryPrimitives.ReadUInt32BigEndian(payload.AsSpan(10)));
        Assert.Equal("base:allocation"u8.ToArray(), payload[14..29]);
        Assert.Equal(21u, BinaryPrimitives.ReadUInt32BigEndian(payload.AsSpan(29)));
        Assert.Equal("qemu:allocation-depth"u8.ToArray(), payload[33..]);
    }

    [Fact]
    public void Meta_context_reply_is_checked()
    {
        var reply = new byte[4 + 15];
        BinaryPrimitives.WriteUInt32BigEndian(reply, 42);
        "base:allocation"u8.CopyTo(reply.AsSpan(4));
        Assert.True(NbdHandshake.TryReadMetaContextReply(reply, out var context, out string? error), error);
        Assert.Equal(new NbdMetaContext(42, "base:allocation"), context);

        Assert.False(NbdHandshake.TryReadMetaContextReply(reply.AsSpan(0, 3), out _, out error));
        Assert.Contains("truncated", error, StringComparison.Ordinal);
        reply[6] = 0xff;
        Assert.False(NbdHandshake.TryReadMetaContextReply(reply, out _, out error));
        Assert.Contains("not valid UTF-8", error, StringComparison.Ordinal);
        reply[6] = 0;
        Assert.False(NbdHandshake.TryReadMetaContextReply(reply, out _, out error));
        Assert.Contains("NUL", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Offset_data_and_error_offset_payloads_are_checked()
    {
        var prefix = new byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(prefix, 0x1234);
        Assert.True(NbdTransmission.TryReadOffsetDataPrefix(prefix, 9, out ulong offset, out string? error), error);
        Assert.Equal(0x1234UL, offset);
        Assert.False(NbdTransmission.TryReadOffsetDataPrefix(prefix, 8, out _, out error));
        Assert.Contains("leaves no data", error, StringComparison.Ordinal);

        var payload = new byte[NbdTransmission.ErrorLength("bad") + 8];
        NbdTransmission.WriteError(payload, NbdError.Io, "bad");
        BinaryPrimitives.WriteUInt64BigEndian(payload.AsSpan(payload.Length - 8), 4096);
        Assert.True(NbdTransmission.TryReadErrorOffset(payload, out uint value, out string message, out ulong at, out error), error);
        Assert.Equal((NbdError.Io, "bad", 4096UL), (value, message, at));
        Assert.False(NbdTransmission.TryReadErrorOffset(payload.AsSpan(0, payload.Length - 1), out _, out _, out _, out error));
        Assert.Contains("error offset chunk length", error, StringComparison.Ordinal);

        var simple = new byte[NbdTransmission.SimpleReplySize];
        NbdTransmission.WriteSimpleReply(simple, 0, 1);
        Assert.Equal(NbdMagic.SimpleReply, NbdTransmission.ReplyMagic(simple));
    }

    [Fact]
    public void Read_coverage_refuses_overlaps_and_counts_exactly()
    {
        int seed = TestSeed.For(nameof(Read_coverage_refuses_overlaps_and_counts_exactly));
        var random = new Random(seed);
        int trials = 0;
        for (int trial = 0; trial < 200; trial++)
        {
            const int Size = 256;
            var model = new bool[Size];
            var coverage = new NbdReadCoverage();
            for (int i = 0; i < 40; i++)
            {
                int start = random.Next(Size);
                int length = random.Next(1, Size - start + 1);
                bool overlaps = model.AsSpan(start, length).Contains(true);
                Assert.Equal(!overlaps, coverage.TryAdd((ulong)start, (ulong)length));
                if (!overlaps)
                {
                    model.AsSpan(start, length).Fill(true);
                }
                Assert.Equal((ulong)model.Count(b => b), coverage.Covered);
            }
            trials++;
        }
        Assert.Equal(200, trials);
    }
}
