using Qed.Cli;

namespace Qed.Tests.Packaging;

/// <summary><c>qed --version</c>: the version from Directory.Build.props and the commit git gave the build.</summary>
public sealed class VersionTests
{
    [Theory]
    [InlineData("0.8.0+d64e4ec96ad33d1cda9e1fd48f5017920824676e", "qed version 0.8.0 (commit d64e4ec)")]
    [InlineData("0.8.0-beta.1+abc", "qed version 0.8.0-beta.1 (commit abc)")]
    [InlineData("0.8.0", "qed version 0.8.0")]    // built without git (a tarball): no commit, no empty parentheses
    public void The_line_has_qemu_img_s_shape(string informational, string line) =>
        Assert.Equal(line, Program.FormatVersion(informational));

    [Fact]
    public void The_version_comes_from_Directory_Build_props()
    {
        string props = File.ReadAllText(Path.Combine(PackedPackages.FindRepositoryRoot(), "Directory.Build.props"));
        string version = System.Text.RegularExpressions.Regex.Match(props, "<VersionPrefix>([^<]+)</VersionPrefix>").Groups[1].Value;
        Assert.NotEqual("", version);
        Assert.StartsWith($"qed version {version}", Program.VersionLine, StringComparison.Ordinal);
        Assert.Equal(Program.VersionLine + "\n", Cli.QedCli.Ok("--version").StdOut);
    }
}
