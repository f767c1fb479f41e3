using System.Buffers.Binary;
using System.Text;
using Qed.Nbd.Protocol;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Nbd.Negotiation;

/// <summary>
/// The option payload formats added for the handshake (NbdHandshake.Options.cs): SERVER replies, LIST/SET_META_CONTEXT
/// requests, META_CONTEXT replies and error messages; layouts against NBD.md 1.5-1.6, round trips, hostile lengths.
/// </summary>
public sealed class NegotiationProtocolTests(ITestOutputHelper output)
{
    [Fact]
    public void Server_reply_layout_and_round_trip()
    {
        var payload = new byte[NbdHandshake.ServerReplyLength("disk", "täst")];
        Assert.Equal(4 + 4 + 5, payload.Length);
        Assert.Equal(payload.Length, NbdHandshake.WriteServerReply(payload, "disk", "täst"));
        Assert.Equal(4u, BinaryPrimitives.ReadUInt32BigEndian(payload));
        Assert.Equal("disk", Encoding.UTF8.GetString(payload, 4, 4));
        Assert.True(NbdHandshake.TryReadServerReply(payload, out string name, out string description, out string? error), error);
        Assert.Equal(("disk", "täst"), (name, description));

        var bare = new byte[NbdHandshake.ServerReplyLength("", null)];
        Assert.Equal(4, NbdHandshake.WriteServerReply(bare, "", null));
        Assert.True(NbdHandshake.TryReadServerReply(bare, out name, out description, out error), error);
        Assert.Equal(("", ""), (name, description));
    }

    [Fact]
    public void Server_reply_description_is_cut_on_a_character_boundary()
    {
        string description = new string('a', NbdLimits.MaxStringBytes - 1) + "é and more";
        var payload = new byte[NbdHandshake.ServerReplyLength("x", description)];
        NbdHandshake.WriteServerReply(payload, "x", description);
        Assert.True(NbdHandshake.TryReadServerReply(payload, out _, out string read, out string? error), error);
        Assert.Equal(new string('a', NbdLimits.MaxStringBytes - 1), read); // the 2-byte 'é' did not fit
    }

    [Fact]
    public void Server_reply_reader_refuses_bad_lengths()
    {
        Assert.False(NbdHandshake.TryReadServerReply([0, 0, 0], out _, out _, out _));
        Assert.False(NbdHandshake.TryReadServerReply([0, 0, 0, 5, (byte)'a'], out _, out _, out string? error));
        Assert.Contains("name length 5", error, StringComparison.Ordinal);
        Assert.False(NbdHandshake.TryReadServerReply([0xff, 0xff, 0xff, 0xff], out _, out _, out _));
        Assert.False(NbdHandshake.TryReadServerReply([0, 0, 0, 1, 0xff], out _, out _, out error));
        Assert.Contains("UTF-8", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Meta_context_request_layout_and_round_trip()
    {
        string[] queries = ["base:allocation", "qemu:"];
        var payload = new byte[NbdHandshake.MetaContextRequestLength("disk", queries)];
        Assert.Equal(4 + 4 + 4 + (4 + 15) + (4 + 5), payload.Length);
        Assert.Equal(payload.Length, NbdHandshake.WriteMetaContextRequest(payload, "disk", queries));
        Assert.Equal(2u, BinaryPrimitives.ReadUInt32BigEndian(payload.AsSpan(8)));
        Assert.Equal(15u, BinaryPrimitives.ReadUInt32BigEndian(payload.AsSpan(12)));

        Assert.True(NbdHandshake.TryReadMetaContextRequest(payload, 2, out string name, out string[] read, out bool tooMany, out string? error), error);
        Assert.Equal("disk", name);
        Assert.Equal(queries, read);
        Assert.False(tooMany);

        Assert.False(NbdHandshake.TryReadMetaContextRequest(payload, 1, out _, out _, out tooMany, out error));
        Assert.True(tooMany, error);
    }

    [Fact]
    public void Meta_context_request_reader_refuses_lies_before_allocating()
    {
        var payload = new byte[12];
        BinaryPrimitives.WriteUInt32BigEndian(payload.AsSpan(4), uint.MaxValue); // empty name, then 4 billion queries in 4 bytes
        Assert.False(NbdHandshake.TryReadMetaContextRequest(payload, int.MaxValue, out _, out var queries, out bool tooMany, out string? error));
        Assert.False(tooMany); // a count the payload cannot hold is invalid, not too big
        Assert.Empty(queries);
        Assert.Contains("does not fit", error, StringComparison.Ordinal);

        var withNul = new byte[NbdHandshake.MetaContextRequestLength("", ["base:\0"])];
        NbdHandshake.WriteMetaContextRequest(withNul, "", ["base:\0"]);
        Assert.False(NbdHandshake.TryReadMetaContextRequest(withNul, 10, out _, out _, out _, out error));
        Assert.Contains("NUL", error, StringComparison.Ordinal);

        string longQuery = new('q', NbdLimits.MaxStringBytes + 1);
        var tooLong = new byte[NbdHandshake.MetaContextRequestLength("", [longQuery])];
        NbdHandshake.WriteMetaContextRequest(tooLong, "", [longQuery]);
        Assert.False(NbdHandshake.TryReadMetaContextRequest(tooLong, 10, out _, out _, out _, out error));
        Assert.Contains("exceeds", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Meta_context_request_reader_survives_random_bytes()
    {
        int seed = TestSeed.For(nameof(Meta_context_request_reader_survives_random_bytes));
        output.WriteLine($"seed {seed}");
        var random = new Random(seed);
        const int Cases = 5000;
        int ran = 0;
        int accepted = 0;
        for (int i = 0; i < Cases; i++)
        {
            var payload = new byte[random.Next(0, 64)];
            random.NextBytes(payload);
            // Small lengths most of the time, so that some payloads parse and the checks after the counts are reached.
            if (payload.Length >= 12 && random.Next(2) == 0)
            {
                BinaryPrimitives.WriteUInt32BigEndian(payload, (uint)random.Next(0, 4));
                BinaryPrimitives.WriteUInt32BigEndian(payload.AsSpan(4 + (int)BinaryPrimitives.ReadUInt32BigEndian(payload)), (uint)random.Next(0, 3));
            }
            if (NbdHandshake.TryReadMetaContextRequest(payload, 128, out _, out var queries, out _, out _))
            {
                accepted++;
                Assert.True(queries.Length <= payload.Length / 4);
            }
            ran++;
        }
        output.WriteLine($"{accepted} of {ran} parsed");
        Assert.Equal(Cases, ran);
    }

    [Fact]
    public void Meta_context_reply_layout_and_round_trip()
    {
        var payload = new byte[NbdHandshake.MetaContextReplyLength("base:allocation")];
        Assert.Equal(4 + 15, NbdHandshake.WriteMetaContextReply(payload, 7, "base:allocation"));
        Assert.Equal(7u, BinaryPrimitives.ReadUInt32BigEndian(payload));
        Assert.True(NbdHandshake.TryReadMetaContextReply(payload, out var context, out string? error), error);
        Assert.Equal(new NbdMetaContext(7, "base:allocation"), context);
        Assert.False(NbdHandshake.TryReadMetaContextReply([0, 0, 1], out _, out _));
    }

    [Fact]
    public void Error_message_is_cut_on_a_character_boundary()
    {
        string message = new string('m', NbdLimits.MaxStringBytes - 2) + "€"; // 3 bytes, one too many
        int length = NbdHandshake.ErrorMessageLength(message);
        Assert.Equal(NbdLimits.MaxStringBytes - 2, length);
        var payload = new byte[length];
        Assert.Equal(length, NbdHandshake.WriteErrorMessage(payload, message));
        Assert.Equal(new string('m', NbdLimits.MaxStringBytes - 2), Encoding.UTF8.GetString(payload));
        Assert.Equal(5, NbdHandshake.ErrorMessageLength("short"));
    }
}
