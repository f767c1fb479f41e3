using Qed.Nbd.Protocol;

namespace Qed.Tests.Nbd;

/// <summary>Transmission-phase headers and chunk payloads against NBD.md 2.1-2.3 (split from ProtocolTests for size).</summary>
public sealed class TransmissionProtocolTests
{
    private static byte[] Hex(string hex) => Convert.FromHexString(hex.Replace(" ", "", StringComparison.Ordinal));

    [Fact]
    public void Request_layout_and_round_trip()
    {
        var request = new NbdRequest(NbdCommandFlags.Fua | NbdCommandFlags.NoHole, NbdCommand.WriteZeroes, 0x0102030405060708, 0x10000, 0x200000);
        var buffer = new byte[NbdTransmission.RequestSize];
        Assert.Equal(28, NbdTransmission.WriteRequest(buffer, request));
        Assert.Equal(Hex("25609513 0003 0006 0102030405060708 0000000000010000 00200000"), buffer);
        Assert.True(NbdTransmission.TryReadRequest(buffer, out var read, out string? error), error);
        Assert.Equal(request, read);
    }

    [Theory]
    [InlineData("21e41c71")] // extended request magic: not negotiated, so wrong here
    [InlineData("12560953")] // reserved historic magic
    [InlineData("67446698")] // a reply magic sent back at us
    public void Request_with_bad_magic_is_refused(string magic)
    {
        byte[] bytes = Hex(magic + "0000 0000 0000000000000001 0000000000000000 00001000");
        Assert.False(NbdTransmission.TryReadRequest(bytes, out var request, out string? error));
        Assert.Equal(default, request);
        Assert.Contains($"request magic 0x{magic}", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Request_keeps_cookie_and_full_width_fields()
    {
        // Cookies must be echoed byte for byte (NBD.md 2.9); offsets and lengths are unsigned.
        byte[] bytes = Hex("25609513 ffff ffff ffffffffffffffff ffffffffffffffff ffffffff");
        Assert.True(NbdTransmission.TryReadRequest(bytes, out var request, out _));
        Assert.Equal(new NbdRequest(0xffff, 0xffff, ulong.MaxValue, ulong.MaxValue, uint.MaxValue), request);
    }

    [Fact]
    public void Simple_reply_layout_and_round_trip()
    {
        var buffer = new byte[NbdTransmission.SimpleReplySize];
        Assert.Equal(16, NbdTransmission.WriteSimpleReply(buffer, NbdError.NoSpc, 0xdeadbeefcafef00d));
        Assert.Equal(Hex("67446698 0000001c deadbeefcafef00d"), buffer);
        Assert.True(NbdTransmission.TryReadSimpleReply(buffer, out var reply, out string? error), error);
        Assert.Equal(new NbdSimpleReply(28, 0xdeadbeefcafef00d), reply);
        buffer[3] = 0x99;
        Assert.False(NbdTransmission.TryReadSimpleReply(buffer, out _, out error));
        Assert.Contains("simple reply magic 0x67446699", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Chunk_header_layout_round_trip_and_length_limit()
    {
        var header = new NbdChunkHeader(NbdChunk.FlagDone, NbdChunk.TypeError, 7, 12);
        var buffer = new byte[NbdTransmission.ChunkHeaderSize];
        Assert.Equal(20, NbdTransmission.WriteChunkHeader(buffer, header));
        Assert.Equal(Hex("668e33ef 0001 8001 0000000000000007 0000000c"), buffer);
        Assert.True(NbdTransmission.TryReadChunkHeader(buffer, 1000, out var read, out string? error), error);
        Assert.Equal(header, read);

        Assert.False(NbdTransmission.TryReadChunkHeader(Hex("668e33ef 0001 0001 0000000000000007 ffffffff"), 1000, out _, out error));
        Assert.Contains("chunk length 4294967295 exceeds the limit 1000", error, StringComparison.Ordinal);
        Assert.False(NbdTransmission.TryReadChunkHeader(Hex("67446698 0001 0001 0000000000000007 00000000"), 1000, out _, out error));
        Assert.Contains("chunk magic 0x67446698", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Offset_data_and_hole_payloads()
    {
        var prefix = new byte[NbdTransmission.OffsetDataPrefixSize];
        Assert.Equal(8, NbdTransmission.WriteOffsetDataPrefix(prefix, 0x123456789));
        Assert.Equal(Hex("0000000123456789"), prefix);

        var hole = new byte[NbdTransmission.OffsetHoleSize];
        Assert.Equal(12, NbdTransmission.WriteOffsetHole(hole, 0x10000, 0x20000));
        Assert.Equal(Hex("0000000000010000 00020000"), hole);
        Assert.True(NbdTransmission.TryReadOffsetHole(hole, out ulong offset, out uint size, out string? error), error);
        Assert.Equal((0x10000UL, 0x20000u), (offset, size));

        Assert.False(NbdTransmission.TryReadOffsetHole(Hex("0000000000010000 00000000"), out _, out _, out error));
        Assert.Contains("size 0", error, StringComparison.Ordinal);
        Assert.False(NbdTransmission.TryReadOffsetHole(Hex("0000000000010000 0000000100"), out _, out _, out error));
        Assert.Contains("length 13 is not 12", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Block_status_payload_layout_and_round_trip()
    {
        NbdExtent[] extents = [new(0x10000, 0), new(0xfff0000, NbdChunk.StateHole | NbdChunk.StateZero)];
        var buffer = new byte[NbdTransmission.BlockStatusLength(extents.Length)];
        Assert.Equal(20, NbdTransmission.WriteBlockStatus(buffer, 1, extents));
        Assert.Equal(Hex("00000001 00010000 00000000 0fff0000 00000003"), buffer);
        Assert.True(NbdTransmission.TryReadBlockStatus(buffer, out uint context, out NbdExtent[] read, out string? error), error);
        Assert.Equal(1u, context);
        Assert.Equal(extents, read);

        Assert.Throws<ArgumentException>(() => NbdTransmission.WriteBlockStatus(new byte[64], 1, []));
    }

    [Theory]
    [InlineData("00000001", "length 4 is not 4 + 8n")]
    [InlineData("00000001 00010000 000000", "length 11 is not 4 + 8n")]
    [InlineData("00000001 00010000 00000000 00000000 00000001", "extent 1 has length 0")]
    [InlineData("", "length 0 is not 4 + 8n")]
    public void Block_status_hostile_payloads_are_refused(string hex, string expected)
    {
        Assert.False(NbdTransmission.TryReadBlockStatus(Hex(hex), out _, out _, out string? error));
        Assert.Contains(expected, error, StringComparison.Ordinal);
    }

    [Fact]
    public void Error_payload_layout_round_trip_and_message_cap()
    {
        var buffer = new byte[NbdTransmission.ErrorLength("no")];
        Assert.Equal(8, NbdTransmission.WriteError(buffer, NbdError.Inval, "no"));
        Assert.Equal(Hex("00000016 0002 6e6f"), buffer);
        Assert.True(NbdTransmission.TryReadError(buffer, out uint value, out string message, out string? error), error);
        Assert.Equal((22u, "no"), (value, message));

        // qemu's client refuses non-data chunks over 1000 bytes: long messages are cut (NBD.md 2.3).
        string longMessage = new('x', 5000);
        var big = new byte[NbdTransmission.ErrorLength(longMessage)];
        Assert.Equal(6 + NbdLimits.MaxErrorMessageBytes, NbdTransmission.WriteError(big, NbdError.Io, longMessage));
        Assert.True(big.Length < 1000);

        // The cut never splits a character: 450 two-byte characters plus one more would end mid-character at 900.
        string wide = "x" + new string('é', 600);
        var cut = new byte[NbdTransmission.ErrorLength(wide)];
        Assert.Equal(6 + 899, NbdTransmission.WriteError(cut, NbdError.Io, wide));
        Assert.True(NbdTransmission.TryReadError(cut, out _, out message, out _));
        Assert.Equal("x" + new string('é', 449), message);

        Assert.Throws<ArgumentOutOfRangeException>(() => NbdTransmission.WriteError(new byte[16], NbdError.None, ""));
        Assert.False(NbdTransmission.TryReadError(Hex("00000016 0005 6e6f"), out _, out _, out error));
        Assert.Contains("message length 5 exceeds payload length 8", error, StringComparison.Ordinal);
        Assert.False(NbdTransmission.TryReadError(Hex("00000000 0000"), out _, out _, out error));
        Assert.Contains("error value 0", error, StringComparison.Ordinal);
        Assert.False(NbdTransmission.TryReadError(Hex("000000"), out _, out _, out error));
        Assert.Contains("truncated", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Constants_match_the_cheat_sheet()
    {
        // NBD.md appendix: a typo in a constant would otherwise only show against a real peer.
        Assert.Equal(0x0ded, NbdTransmissionFlags.HasFlags | NbdTransmissionFlags.SendFlush | NbdTransmissionFlags.SendFua
            | NbdTransmissionFlags.SendTrim | NbdTransmissionFlags.SendWriteZeroes | NbdTransmissionFlags.SendDf
            | NbdTransmissionFlags.CanMultiConn | NbdTransmissionFlags.SendCache | NbdTransmissionFlags.SendFastZero);
        Assert.Equal(0x050f, NbdTransmissionFlags.HasFlags | NbdTransmissionFlags.ReadOnly | NbdTransmissionFlags.SendFlush
            | NbdTransmissionFlags.SendFua | NbdTransmissionFlags.CanMultiConn | NbdTransmissionFlags.SendCache);
        Assert.Equal(0x8000000Au, NbdOptionReply.ErrExtHeaderReqd);
        Assert.Equal([1, 2, 4, 8, 16, 32], new[] { NbdCommandFlags.Fua, NbdCommandFlags.NoHole, NbdCommandFlags.Df,
            NbdCommandFlags.ReqOne, NbdCommandFlags.FastZero, NbdCommandFlags.PayloadLen }.Select(f => (int)f));
        Assert.Equal(108u, NbdError.Shutdown);
        Assert.Equal(32770, NbdChunk.TypeErrorOffset);
    }
}
