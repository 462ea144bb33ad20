#!/bin/sh
# A cloud-style dynamic inventory: groups from tags, addresses in _meta.hostvars.
case "$1" in
  --list)
    cat <<'JSON'
{
  "tag_role_web": {"hosts": ["i-0a1.example", "i-0a2.example"]},
  "tag_role_db": {"hosts": ["i-0b1.example"], "vars": {"db_engine": "postgres"}},
  "region_eu_west_1": {"hosts": ["i-0a1.example", "i-0a2.example", "i-0b1.example"]},
  "ec2": {"children": ["tag_role_web", "tag_role_db"]},
  "_meta": {
    "hostvars": {
      "i-0a1.example": {"ansible_host": "127.0.0.51", "ec2_instance_type": "t3.small", "ec2_tags": {"role": "web", "Name": "web-a"}},
      "i-0a2.example": {"ansible_host": "127.0.0.52", "ec2_instance_type": "t3.small", "ec2_tags": {"role": "web", "Name": "web-b"}},
      "i-0b1.example": {"ansible_host": "127.0.0.53", "ec2_instance_type": "r6g.large", "ec2_tags": {"role": "db"}}
    }
  }
}
JSON
    ;;
  --host)
    echo '{}'
    ;;
esac
