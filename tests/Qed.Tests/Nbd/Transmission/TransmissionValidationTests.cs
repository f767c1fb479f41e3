using Qed.Image;
using Qed.Nbd.Protocol;
using Qed.Nbd.Server;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Nbd.Transmission;

/// <summary>
/// Requests the server must refuse, each with the errno NBD.md 6.1/6.3 asks for, and the connection kept (a READ after
/// each still works); then the inputs after which the stream is lost and the connection must be dropped.
/// </summary>
public sealed class TransmissionValidationTests
{
    private const long Size = 4 * 1024 * 1024;
    private const uint MaxPayload = 1024 * 1024; // small, so that "oversized" cases stay cheap

    public static TheoryData<string, bool, bool, ushort, ushort, ulong, uint, uint> Refusals()
    {
        const ushort Fua = NbdCommandFlags.Fua;
        var data = new TheoryData<string, bool, bool, ushort, ushort, ulong, uint, uint>
        {
            // name, structured, read-only, command, flags, offset, length, expected error
            { "unknown command 42", true, false, 42, 0, 0, 0, NbdError.Inval },
            { "RESIZE is not offered", true, false, NbdCommand.Resize, 0, Size, 0, NbdError.Inval },
            { "unknown flag bit 15", true, false, NbdCommand.Read, 0x8000, 0, 4096, NbdError.Inval },
            { "NO_HOLE on READ", true, false, NbdCommand.Read, NbdCommandFlags.NoHole, 0, 4096, NbdError.Inval },
            { "REQ_ONE on WRITE_ZEROES", true, false, NbdCommand.WriteZeroes, NbdCommandFlags.ReqOne, 0, 4096, NbdError.Inval },
            { "FAST_ZERO on TRIM", true, false, NbdCommand.Trim, NbdCommandFlags.FastZero, 0, 4096, NbdError.Inval },
            { "DF on BLOCK_STATUS", true, false, NbdCommand.BlockStatus, NbdCommandFlags.Df, 0, 4096, NbdError.Inval },
            { "DF without structured replies", false, false, NbdCommand.Read, NbdCommandFlags.Df, 0, 4096, NbdError.Inval },
            { "PAYLOAD_LEN without extended headers", true, false, NbdCommand.Read, NbdCommandFlags.PayloadLen, 0, 4096, NbdError.Inval },
            { "READ past the end", true, false, NbdCommand.Read, 0, Size - 512, 1024, NbdError.Inval },
            { "READ starting past the end", false, false, NbdCommand.Read, 0, Size + 512, 0, NbdError.Inval },
            { "READ whose end wraps 2^64", true, false, NbdCommand.Read, 0, ulong.MaxValue - 511, 1024, NbdError.Inval },
            { "TRIM past the end", true, false, NbdCommand.Trim, Fua, Size, 1, NbdError.Inval },
            { "CACHE past the end", true, false, NbdCommand.Cache, 0, Size, 4096, NbdError.Inval },
            { "BLOCK_STATUS past the end", true, false, NbdCommand.BlockStatus, 0, Size - 4096, 8192, NbdError.Inval },
            { "WRITE_ZEROES past the end", true, false, NbdCommand.WriteZeroes, 0, Size - 4096, 8192, NbdError.NoSpc },
            { "WRITE_ZEROES wrapping 2^64", false, false, NbdCommand.WriteZeroes, 0, ulong.MaxValue, 2, NbdError.NoSpc },
            { "READ above the maximum payload", true, false, NbdCommand.Read, 0, 0, MaxPayload + 1, NbdError.Inval },
            { "READ of 1 GiB, simple replies", false, false, NbdCommand.Read, 0, 0, 1u << 30, NbdError.Inval },
            { "BLOCK_STATUS of length 0", true, false, NbdCommand.BlockStatus, 0, 0, 0, NbdError.Inval },
            { "BLOCK_STATUS without structured replies", false, false, NbdCommand.BlockStatus, 0, 0, 4096, NbdError.Inval },
            { "TRIM on a read-only export", true, true, NbdCommand.Trim, 0, 0, 4096, NbdError.Perm },
            { "WRITE_ZEROES on a read-only export", false, true, NbdCommand.WriteZeroes, 0, 0, 4096, NbdError.Perm },
            { "TRIM past the end of a read-only export", true, true, NbdCommand.Trim, 0, Size, 4096, NbdError.Perm },
        };
        return data;
    }

    [Theory]
    [MemberData(nameof(Refusals))]
    public async Task Refused_requests_get_their_errno_and_the_connection_stays(string name, bool structured, bool readOnly, ushort command, ushort flags, ulong offset, uint length, uint expected)
    {
        using var dir = new TempDirectory();
        await using var device = Open(dir, readOnly);
        await using var loop = LoopHarness.Start(dir.Path, new NbdExport("", device) { ReadOnly = readOnly }, structured, configure: o => o with { MaxPayload = (int)MaxPayload });
        var client = loop.Client;

        var reply = client.Call(command, offset, length, flags);
        Assert.True(expected == reply.Error, $"{name}: expected error {expected}, got {reply.Error} ({reply.Message})");
        if (structured)
        {
            Assert.NotEmpty(reply.Message);
        }

        Assert.Equal(0u, client.Call(NbdCommand.Read, 0, 4096).Error);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Writes_are_refused_after_their_payload_is_read(bool structured)
    {
        using var dir = new TempDirectory();
        await using var device = Open(dir, readOnly: true);
        await using var loop = LoopHarness.Start(dir.Path, new NbdExport("", device) { ReadOnly = true }, structured, configure: o => o with { MaxPayload = (int)MaxPayload });
        var client = loop.Client;
        byte[] payload = new byte[8192];
        Array.Fill(payload, (byte)0x52); // would parse as a bad request magic if the payload were not consumed

        Assert.Equal(NbdError.Perm, client.Call(NbdCommand.Write, 0, 8192, 0, payload).Error);
        Assert.Equal(NbdError.Perm, client.Call(NbdCommand.Write, Size, 8192, NbdCommandFlags.Fua, payload).Error);
        Assert.Equal(0u, client.Call(NbdCommand.Read, 0, 4096).Error);
    }

    [Fact]
    public async Task Writes_past_the_end_get_ENOSPC_and_bad_flags_EINVAL_after_the_payload()
    {
        using var dir = new TempDirectory();
        await using var device = Open(dir, readOnly: false);
        await using var loop = LoopHarness.Start(dir.Path, new NbdExport("", device), configure: o => o with { MaxPayload = (int)MaxPayload });
        var client = loop.Client;
        byte[] payload = new byte[8192];
        Array.Fill(payload, (byte)0x25);

        Assert.Equal(NbdError.NoSpc, client.Call(NbdCommand.Write, Size - 4096, 8192, 0, payload).Error);
        Assert.Equal(NbdError.NoSpc, client.Call(NbdCommand.Write, ulong.MaxValue - 4095, 8192, 0, payload).Error);
        Assert.Equal(NbdError.Inval, client.Call(NbdCommand.Write, 0, 8192, NbdCommandFlags.NoHole, payload).Error);
        Assert.Equal(new byte[8192], client.Call(NbdCommand.Read, 0, 8192).Data);
    }

    [Fact]
    public async Task Flags_not_advertised_are_refused()
    {
        using var dir = new TempDirectory();
        await using var device = Open(dir, readOnly: false);
        ushort flags = NbdTransmissionFlags.HasFlags | NbdTransmissionFlags.SendFlush; // no FUA, TRIM, WRITE_ZEROES, DF, FAST_ZERO
        await using var loop = LoopHarness.Start(dir.Path, new NbdExport("", device), flags: flags);
        var client = loop.Client;

        Assert.Equal(NbdError.Inval, client.Call(NbdCommand.Write, 0, 512, NbdCommandFlags.Fua, new byte[512]).Error);
        Assert.Equal(NbdError.Inval, client.Call(NbdCommand.Read, 0, 512, NbdCommandFlags.Df).Error);
        Assert.Equal(NbdError.Inval, client.Call(NbdCommand.Trim, 0, 512).Error);
        Assert.Equal(NbdError.Inval, client.Call(NbdCommand.WriteZeroes, 0, 512).Error);
        Assert.Equal(NbdError.Inval, client.Call(NbdCommand.WriteZeroes, 0, 512, NbdCommandFlags.FastZero).Error);
        Assert.Equal(0u, client.Call(NbdCommand.Flush, 0, 0).Error);
        Assert.Equal(0u, client.Call(NbdCommand.Cache, 0, 512).Error); // answered even when not advertised
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task An_oversized_write_within_the_hard_cap_is_drained_and_refused(bool structured)
    {
        using var dir = new TempDirectory();
        await using var device = Open(dir, readOnly: false);
        await using var loop = LoopHarness.Start(dir.Path, new NbdExport("", device), structured, configure: o => o with { MaxPayload = (int)MaxPayload });
        var client = loop.Client;
        byte[] payload = new byte[MaxPayload + 4096];
        Array.Fill(payload, (byte)0x25);

        Assert.Equal(NbdError.Inval, client.Call(NbdCommand.Write, 0, (uint)payload.Length, 0, payload).Error);
        Assert.Equal(new byte[4096], client.Call(NbdCommand.Read, 0, 4096).Data);
        Assert.True(loop.Statistics.PeakHeldBytes <= MaxPayload, $"the drained payload was held: {loop.Statistics.PeakHeldBytes} bytes");
    }

    [Fact]
    public async Task A_write_above_the_hard_cap_drops_the_connection_without_buffering()
    {
        using var dir = new TempDirectory();
        await using var device = Open(dir, readOnly: false);
        await using var loop = LoopHarness.Start(dir.Path, new NbdExport("", device), configure: o => o with { MaxPayload = (int)MaxPayload });
        var client = loop.Client;

        client.Send(NbdCommand.Write, 0, uint.MaxValue);
        Assert.True(client.WaitForClose(), "the server kept the connection");
        Assert.IsType<NbdProtocolException>(await loop.WaitForLoopAsync());
        Assert.Equal(0, loop.Statistics.PeakHeldBytes);
    }

    [Fact]
    public async Task A_bad_request_magic_drops_the_connection_after_answering_what_came_before()
    {
        using var dir = new TempDirectory();
        await using var device = Open(dir, readOnly: false);
        await using var loop = LoopHarness.Start(dir.Path, new NbdExport("", device));
        var client = loop.Client;

        ulong read = client.Send(NbdCommand.Read, 0, 65536);
        var bad = new byte[NbdTransmission.RequestSize];
        NbdTransmission.WriteRequest(bad, new NbdRequest(0, NbdCommand.Read, 1, 0, 512));
        bad[3] ^= 0xff;
        client.SendAll(bad);
        Assert.Equal(read, client.Receive().Cookie);
        Assert.True(client.WaitForClose(), "the server kept the connection");
        var failure = await loop.WaitForLoopAsync();
        Assert.IsType<NbdProtocolException>(failure);
        Assert.Contains("magic", failure!.Message, StringComparison.Ordinal);
    }

    private static Qed.IO.BlockDevice Open(TempDirectory dir, bool readOnly)
    {
        string image = dir.File("disk.qed");
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qed", image, Size.ToString(System.Globalization.CultureInfo.InvariantCulture));
        return DiskImage.Open(image, null, new ImageOpenOptions { ReadOnly = readOnly });
    }
}
