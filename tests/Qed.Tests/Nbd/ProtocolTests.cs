using Qed.Nbd.Protocol;

namespace Qed.Tests.Nbd;

/// <summary>
/// Byte layouts of every NBD reader/writer against the values in ../shared/NBD.md, round trips, and hostile input
/// (bad magics, truncation, lengths that must be refused before anything is sized from them).
/// </summary>
public sealed class ProtocolTests
{
    private static byte[] Hex(string hex) => Convert.FromHexString(hex.Replace(" ", "", StringComparison.Ordinal));

    [Fact]
    public void Greeting_layout_and_round_trip()
    {
        var buffer = new byte[NbdHandshake.GreetingSize];
        Assert.Equal(18, NbdHandshake.WriteGreeting(buffer, NbdHandshake.GreetingFlags));
        // "NBDMAGIC", "IHAVEOPT", flags 0x0003 (NBD.md 1.3).
        Assert.Equal(Hex("4e42444d41474943 49484156454F5054 0003"), buffer);
        Assert.True(NbdHandshake.TryReadGreeting(buffer, out ushort flags, out string? error), error);
        Assert.Equal(3, flags);
    }

    [Fact]
    public void Greeting_with_oldstyle_magic_is_refused()
    {
        byte[] oldstyle = Hex("4e42444d41474943 0000420281861253 0000");
        Assert.False(NbdHandshake.TryReadGreeting(oldstyle, out _, out string? error));
        Assert.Contains("0x0000420281861253", error, StringComparison.Ordinal);
        Assert.Contains("IHAVEOPT", error, StringComparison.Ordinal);

        byte[] badFirst = Hex("4e42444d41474944 49484156454F5054 0003");
        Assert.False(NbdHandshake.TryReadGreeting(badFirst, out _, out error));
        Assert.Contains("0x4e42444d41474944", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Client_flags_layout_and_unoffered_bits()
    {
        var buffer = new byte[NbdHandshake.ClientFlagsSize];
        Assert.Equal(4, NbdHandshake.WriteClientFlags(buffer, 3));
        Assert.Equal(Hex("00000003"), buffer);
        Assert.True(NbdHandshake.TryReadClientFlags(buffer, 3, out uint flags, out string? error), error);
        Assert.Equal(3u, flags);

        // NO_ZEROES not offered, or an unknown bit: the server must drop (NBD.md 1.3).
        Assert.False(NbdHandshake.TryReadClientFlags(buffer, NbdHandshakeFlags.FixedNewstyle, out _, out error));
        Assert.Contains("0x00000002", error, StringComparison.Ordinal);
        Assert.False(NbdHandshake.TryReadClientFlags(Hex("80000001"), 3, out _, out error));
        Assert.Contains("0x80000000", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Option_header_layout_and_round_trip()
    {
        var buffer = new byte[NbdHandshake.OptionHeaderSize];
        Assert.Equal(16, NbdHandshake.WriteOptionHeader(buffer, NbdOption.Go, 9));
        Assert.Equal(Hex("49484156454F5054 00000007 00000009"), buffer);
        Assert.True(NbdHandshake.TryReadOptionHeader(buffer, NbdLimits.DefaultMaxOptionLength, out var header, out string? error), error);
        Assert.Equal(new NbdOptionHeader(NbdOption.Go, 9), header);
    }

    [Fact]
    public void Option_header_with_huge_length_is_refused_without_allocating_it()
    {
        byte[] hostile = Hex("49484156454F5054 00000007 ffffffff");
        long before = GC.GetAllocatedBytesForCurrentThread();
        bool ok = NbdHandshake.TryReadOptionHeader(hostile, NbdLimits.DefaultMaxOptionLength, out var header, out string? error);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.False(ok);
        Assert.Equal(default, header);
        Assert.Contains("length 4294967295", error, StringComparison.Ordinal);
        Assert.True(allocated < 4096, $"refusing allocated {allocated} bytes (only the message is expected)");

        // One above the limit is refused, the limit itself accepted.
        byte[] atLimit = Hex("49484156454F5054 00000007 00010000");
        Assert.True(NbdHandshake.TryReadOptionHeader(atLimit, 65536, out _, out _));
        Assert.False(NbdHandshake.TryReadOptionHeader(atLimit, 65535, out _, out _));
    }

    [Fact]
    public void Option_header_with_bad_magic_is_refused()
    {
        byte[] bad = Hex("49484156454F5055 00000007 00000000");
        Assert.False(NbdHandshake.TryReadOptionHeader(bad, 100, out _, out string? error));
        Assert.Contains("option magic 0x49484156454f5055", error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(17)]
    [InlineData(27)]
    public void Truncated_headers_are_refused(int length)
    {
        var bytes = new byte[length];
        string? error;
        if (length < NbdHandshake.GreetingSize)
        {
            Assert.False(NbdHandshake.TryReadGreeting(bytes, out _, out error));
            Assert.Contains($"greeting truncated: {length} of 18", error, StringComparison.Ordinal);
        }
        if (length < NbdHandshake.OptionHeaderSize)
        {
            Assert.False(NbdHandshake.TryReadOptionHeader(bytes, 100, out _, out error));
            Assert.Contains("truncated", error, StringComparison.Ordinal);
        }
        if (length < NbdHandshake.OptionReplyHeaderSize)
        {
            Assert.False(NbdHandshake.TryReadOptionReplyHeader(bytes, 100, out _, out error));
            Assert.Contains("truncated", error, StringComparison.Ordinal);
        }
        Assert.False(NbdTransmission.TryReadRequest(bytes, out _, out error));
        Assert.Contains($"request header truncated: {length} of 28", error, StringComparison.Ordinal);
        if (length < NbdTransmission.SimpleReplySize)
        {
            Assert.False(NbdTransmission.TryReadSimpleReply(bytes, out _, out error));
        }
        if (length < NbdTransmission.ChunkHeaderSize)
        {
            Assert.False(NbdTransmission.TryReadChunkHeader(bytes, 100, out _, out error));
        }
        if (length < NbdHandshake.ClientFlagsSize)
        {
            Assert.False(NbdHandshake.TryReadClientFlags(bytes, 3, out _, out error));
        }
    }

    [Fact]
    public void Option_reply_header_layout_and_round_trip()
    {
        var buffer = new byte[NbdHandshake.OptionReplyHeaderSize];
        Assert.Equal(20, NbdHandshake.WriteOptionReplyHeader(buffer, NbdOption.Info, NbdOptionReply.ErrUnknown, 5));
        Assert.Equal(Hex("0003e889045565a9 00000006 80000006 00000005"), buffer);
        Assert.True(NbdHandshake.TryReadOptionReplyHeader(buffer, 100, out var header, out string? error), error);
        Assert.Equal(new NbdOptionReplyHeader(NbdOption.Info, NbdOptionReply.ErrUnknown, 5), header);
        Assert.True(NbdOptionReply.IsError(header.ReplyType));
        Assert.False(NbdOptionReply.IsError(NbdOptionReply.Ack));

        Assert.False(NbdHandshake.TryReadOptionReplyHeader(buffer, 4, out _, out error));
        Assert.Contains("length 5", error, StringComparison.Ordinal);
        buffer[0] = 0xff;
        Assert.False(NbdHandshake.TryReadOptionReplyHeader(buffer, 100, out _, out error));
        Assert.Contains("magic", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Info_request_layout_and_round_trip()
    {
        ushort[] infos = [NbdInfo.BlockSize, NbdInfo.Name];
        var buffer = new byte[NbdHandshake.InfoRequestLength("disk", infos.Length)];
        Assert.Equal(14, NbdHandshake.WriteInfoRequest(buffer, "disk", infos));
        Assert.Equal(Hex("00000004 6469736b 0002 0003 0001"), buffer);
        Assert.True(NbdHandshake.TryReadInfoRequest(buffer, out string name, out ushort[] read, out string? error), error);
        Assert.Equal("disk", name);
        Assert.Equal(infos, read);

        // Default export, no infos: the 6-byte minimum.
        Assert.True(NbdHandshake.TryReadInfoRequest(Hex("00000000 0000"), out name, out read, out _));
        Assert.Equal("", name);
        Assert.Empty(read);
    }

    [Theory]
    [InlineData("ffffffff 0000", "name length 4294967295")]
    [InlineData("00000001 41 0002 0003", "count 2 gives length 11")]
    [InlineData("00000001 41 0000 00", "payload has 8")]
    [InlineData("00000001 00 0000", "contains NUL")]
    [InlineData("00000001 ff 0000", "not valid UTF-8")]
    [InlineData("00000000 00", "truncated")]
    public void Info_request_hostile_payloads_are_refused(string hex, string expected)
    {
        Assert.False(NbdHandshake.TryReadInfoRequest(Hex(hex), out _, out _, out string? error));
        Assert.Contains(expected, error, StringComparison.Ordinal);
    }

    [Fact]
    public void Info_items_layout_and_round_trip()
    {
        var export = new byte[NbdHandshake.InfoExportSize];
        NbdHandshake.WriteInfoExport(export, 0x4000000, 0x0ded);
        Assert.Equal(Hex("0000 0000000004000000 0ded"), export);
        Assert.True(NbdHandshake.TryReadInfoExport(export, out ulong size, out ushort flags, out string? error), error);
        Assert.Equal((0x4000000UL, (ushort)0x0ded), (size, flags));

        var block = new byte[NbdHandshake.InfoBlockSizeSize];
        NbdHandshake.WriteInfoBlockSize(block, new NbdBlockSize(1, 4096, 32 * 1024 * 1024));
        Assert.Equal(Hex("0003 00000001 00001000 02000000"), block);
        Assert.True(NbdHandshake.TryReadInfoBlockSize(block, out var sizes, out error), error);
        Assert.Equal(new NbdBlockSize(1, 4096, 32 * 1024 * 1024), sizes);

        var text = new byte[NbdHandshake.InfoTextLength("héllo")];
        Assert.Equal(8, NbdHandshake.WriteInfoText(text, NbdInfo.Description, "héllo"));
        Assert.Equal(Hex("0002 68c3a96c6c6f"), text);
        Assert.True(NbdHandshake.TryReadInfoText(text, NbdInfo.Description, out string read, out error), error);
        Assert.Equal("héllo", read);
        Assert.False(NbdHandshake.TryReadInfoText(text, NbdInfo.Name, out _, out error));
        Assert.Contains("info type 2", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Info_items_with_wrong_length_or_flags_are_refused()
    {
        // libnbd's rules (NBD.md 1.7): EXPORT exactly 12 bytes with HAS_FLAGS, BLOCK_SIZE exactly 14.
        Assert.False(NbdHandshake.TryReadInfoExport(Hex("0000 0000000004000000 0ded 00"), out _, out _, out string? error));
        Assert.Contains("length 13 is not 12", error, StringComparison.Ordinal);
        Assert.False(NbdHandshake.TryReadInfoExport(Hex("0000 0000000004000000 0000"), out _, out _, out error));
        Assert.Contains("0x0000 lack HAS_FLAGS", error, StringComparison.Ordinal);
        Assert.False(NbdHandshake.TryReadInfoBlockSize(Hex("0003 00000001 00001000"), out _, out error));
        Assert.Contains("length 10 is not 14", error, StringComparison.Ordinal);
        Assert.False(NbdHandshake.TryReadInfoExport(Hex("00"), out _, out _, out error));
        Assert.Contains("truncated", error, StringComparison.Ordinal);
        Assert.False(NbdHandshake.TryReadInfoText(new byte[2 + NbdLimits.MaxStringBytes + 1].AsSpan(), 0, out _, out error));
        Assert.Contains("exceeds 4096", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Export_name_reply_with_and_without_padding()
    {
        var buffer = new byte[NbdHandshake.ExportNameReplyPaddedSize];
        buffer.AsSpan().Fill(0xee);
        Assert.Equal(134, NbdHandshake.WriteExportNameReply(buffer, 0x4000000, 0x050f, noZeroes: false));
        Assert.Equal(Hex("0000000004000000 050f"), buffer[..10]);
        Assert.All(buffer[10..], b => Assert.Equal(0, b));

        buffer.AsSpan().Fill(0xee);
        Assert.Equal(10, NbdHandshake.WriteExportNameReply(buffer, 0x4000000, 0x050f, noZeroes: true));
        Assert.Equal(Hex("0000000004000000 050f"), buffer[..10]);
        Assert.Equal(0xee, buffer[10]); // nothing written past the 10 bytes
    }
}
