using System.Buffers.Binary;
using Qed.Format;

namespace Qed.Tests.Format;

public class QedHeaderTests
{
    /// <summary>A header whose every field has a distinct value with distinct bytes, so a field written at the wrong place or width shows.</summary>
    private static readonly QedHeader s_distinct = new()
    {
        Magic = 0x00444551,
        ClusterSize = 0x04030201,
        TableSize = 0x08070605,
        HeaderSize = 0x0c0b0a09,
        Features = (QedFeatures)0x14131211100f0e0dUL,
        CompatFeatures = 0x1c1b1a1918171615UL,
        AutoclearFeatures = 0x24232221201f1e1dUL,
        L1TableOffset = 0x2c2b2a2928272625UL,
        ImageSize = 0x34333231302f2e2dUL,
        BackingFilenameOffset = 0x38373635,
        BackingFilenameSize = 0x3c3b3a39,
    };

    [Fact]
    public void WriteTo_PutsEveryFieldLittleEndianAtItsOffset()
    {
        byte[] bytes = new byte[HeaderLayout.Size];
        s_distinct.WriteTo(bytes);

        Assert.Equal("QED\0"u8.ToArray(), bytes[0..4]);
        Assert.Equal(new byte[] { 0x01, 0x02, 0x03, 0x04 }, bytes[4..8]);
        Assert.Equal(new byte[] { 0x05, 0x06, 0x07, 0x08 }, bytes[8..12]);
        Assert.Equal(new byte[] { 0x09, 0x0a, 0x0b, 0x0c }, bytes[12..16]);
        Assert.Equal(new byte[] { 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14 }, bytes[16..24]);
        Assert.Equal(new byte[] { 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c }, bytes[24..32]);
        Assert.Equal(new byte[] { 0x1d, 0x1e, 0x1f, 0x20, 0x21, 0x22, 0x23, 0x24 }, bytes[32..40]);
        Assert.Equal(new byte[] { 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x2b, 0x2c }, bytes[40..48]);
        Assert.Equal(new byte[] { 0x2d, 0x2e, 0x2f, 0x30, 0x31, 0x32, 0x33, 0x34 }, bytes[48..56]);
        Assert.Equal(new byte[] { 0x35, 0x36, 0x37, 0x38 }, bytes[56..60]);
        Assert.Equal(new byte[] { 0x39, 0x3a, 0x3b, 0x3c }, bytes[60..64]);
    }

    [Fact]
    public void LayoutConstants_MatchTheSpecTable()
    {
        Assert.Equal(
            new[] { 0, 4, 8, 12, 16, 24, 32, 40, 48, 56, 60, 64 },
            new[]
            {
                HeaderLayout.MagicOffset, HeaderLayout.ClusterSizeOffset, HeaderLayout.TableSizeOffset, HeaderLayout.HeaderSizeOffset,
                HeaderLayout.FeaturesOffset, HeaderLayout.CompatFeaturesOffset, HeaderLayout.AutoclearFeaturesOffset,
                HeaderLayout.L1TableOffsetOffset, HeaderLayout.ImageSizeOffset, HeaderLayout.BackingFilenameOffsetOffset,
                HeaderLayout.BackingFilenameSizeOffset, HeaderLayout.Size,
            });
        Assert.Equal(0x00444551u, HeaderLayout.Magic);
    }

    [Fact]
    public void Parse_ReadsEveryField()
    {
        byte[] bytes = new byte[HeaderLayout.Size];
        for (int i = 0; i < bytes.Length; i++)
        {
            bytes[i] = (byte)i;
        }
        var header = QedHeader.Parse(bytes);

        Assert.Equal(0x03020100u, header.Magic);
        Assert.Equal(0x07060504u, header.ClusterSize);
        Assert.Equal(0x0b0a0908u, header.TableSize);
        Assert.Equal(0x0f0e0d0cu, header.HeaderSize);
        Assert.Equal(0x1716151413121110UL, (ulong)header.Features);
        Assert.Equal(0x1f1e1d1c1b1a1918UL, header.CompatFeatures);
        Assert.Equal(0x2726252423222120UL, header.AutoclearFeatures);
        Assert.Equal(0x2f2e2d2c2b2a2928UL, header.L1TableOffset);
        Assert.Equal(0x3736353433323130UL, header.ImageSize);
        Assert.Equal(0x3b3a3938u, header.BackingFilenameOffset);
        Assert.Equal(0x3f3e3d3cu, header.BackingFilenameSize);
    }

    [Fact]
    public void RoundTrip_WriteThenParse_GivesTheSameHeaderAndBytes()
    {
        byte[] first = new byte[HeaderLayout.Size];
        s_distinct.WriteTo(first);
        var parsed = QedHeader.Parse(first);
        Assert.Equal(s_distinct, parsed);

        byte[] second = new byte[HeaderLayout.Size];
        parsed.WriteTo(second);
        Assert.Equal(first, second);
    }

    [Fact]
    public void RoundTrip_ParseThenWrite_KeepsArbitraryBytes()
    {
        var random = new Random(116);
        for (int round = 0; round < 100; round++)
        {
            byte[] original = new byte[HeaderLayout.Size];
            random.NextBytes(original);
            byte[] written = new byte[HeaderLayout.Size];
            QedHeader.Parse(original).WriteTo(written);
            Assert.Equal(original, written);
        }
    }

    [Fact]
    public void WriteTo_LeavesBytesAfterTheHeaderAlone()
    {
        byte[] sector = Enumerable.Repeat((byte)0xee, HeaderLayout.SectorSize).ToArray();
        s_distinct.WriteTo(sector);
        Assert.All(sector[HeaderLayout.Size..], b => Assert.Equal(0xee, b));
    }

    [Fact]
    public void WriteTo_ShortDestination_Throws()
    {
        Assert.Throws<ArgumentException>(() => s_distinct.WriteTo(new byte[HeaderLayout.Size - 1]));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(4)]
    [InlineData(40)]
    [InlineData(63)]
    public void Parse_ShortInput_IsZeroPadded(int length)
    {
        byte[] full = new byte[HeaderLayout.Size];
        s_distinct.WriteTo(full);
        var header = QedHeader.Parse(full.AsSpan(0, length));

        byte[] expected = new byte[HeaderLayout.Size];
        full.AsSpan(0, length).CopyTo(expected);
        byte[] actual = new byte[HeaderLayout.Size];
        header.WriteTo(actual);
        Assert.Equal(expected, actual);
    }

    [Fact]
    public void Parse_FortyBytes_LeavesL1OffsetAndLaterFieldsZero()
    {
        byte[] full = new byte[HeaderLayout.Size];
        s_distinct.WriteTo(full);
        var header = QedHeader.Parse(full.AsSpan(0, 40));
        Assert.Equal(s_distinct.AutoclearFeatures, header.AutoclearFeatures);
        Assert.Equal(0UL, header.L1TableOffset);
        Assert.Equal(0UL, header.ImageSize);
        Assert.Equal(0u, header.BackingFilenameOffset);
        Assert.Equal(0u, header.BackingFilenameSize);
    }

    [Fact]
    public void Parse_IgnoresBytesPastTheHeader()
    {
        byte[] bytes = new byte[HeaderLayout.SectorSize];
        s_distinct.WriteTo(bytes);
        bytes.AsSpan(HeaderLayout.Size).Fill(0x77);
        Assert.Equal(s_distinct, QedHeader.Parse(bytes));
    }

    [Fact]
    public void HasMagic_ChecksOnlyTheFirstFourBytes()
    {
        Assert.True(QedHeader.HasMagic("QED\0"u8));
        Assert.True(QedHeader.HasMagic("QED\0garbage"u8));
        Assert.False(QedHeader.HasMagic("QED"u8));
        Assert.False(QedHeader.HasMagic("QEDX"u8));
        Assert.False(QedHeader.HasMagic(new byte[] { 0x51, 0x46, 0x49, 0xfb }));
    }

    [Theory]
    [InlineData(0UL, 0u, false)]
    [InlineData(0x01UL, 0u, false)] // empty name: QEMU uses no backing file
    [InlineData(0x01UL, 7u, true)]
    [InlineData(0x04UL, 7u, false)] // NO_PROBE alone means nothing
    [InlineData(0x05UL, 7u, true)]
    public void HasBackingFile_NeedsTheBitAndANonEmptyName(ulong features, uint nameSize, bool expected)
    {
        var header = new QedHeader { Features = (QedFeatures)features, BackingFilenameSize = nameSize };
        Assert.Equal(expected, header.HasBackingFile);
    }

    [Fact]
    public void NeedsCheck_FollowsBit2()
    {
        Assert.True(new QedHeader { Features = QedFeatures.NeedCheck }.NeedsCheck);
        Assert.True(new QedHeader { Features = (QedFeatures)0x07 }.NeedsCheck);
        Assert.False(new QedHeader { Features = (QedFeatures)0x05 }.NeedsCheck);
    }

    [Fact]
    public void FeatureBits_HaveTheSpecValues()
    {
        Assert.Equal(0x01UL, (ulong)QedFeatures.BackingFile);
        Assert.Equal(0x02UL, (ulong)QedFeatures.NeedCheck);
        Assert.Equal(0x04UL, (ulong)QedFeatures.BackingFormatNoProbe);
        Assert.Equal(0x07UL, (ulong)QedFeatures.Known);
    }

    [Fact]
    public void Parse_IsLittleEndianRegardlessOfHost()
    {
        byte[] bytes = new byte[HeaderLayout.Size];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(HeaderLayout.ImageSizeOffset), 0xa00000);
        Assert.Equal(0xa00000UL, QedHeader.Parse(bytes).ImageSize);
        Assert.Equal(0x00, bytes[HeaderLayout.ImageSizeOffset]);
        Assert.Equal(0xa0, bytes[HeaderLayout.ImageSizeOffset + 2]);
    }
}
